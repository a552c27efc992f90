"""When acme.sh renews the certificate: the --days that keeps a third of every Let's Encrypt
lifetime in hand."""

from __future__ import annotations

import math
from collections.abc import Sequence
from fractions import Fraction

from mailserver.core import catalog

# Let's Encrypt dates a certificate's notBefore an hour before it signs it, against clock skew
# (https://community.letsencrypt.org/t/time-zone-considerations-needed-for-certificates/23130),
# so notAfter comes up to an hour earlier than issue time + lifetime. In days.
CERT_BACKDATE_DAYS = Fraction(1, 24)


def renewal_days_left(lifetime: float, days: int, attempt: int) -> Fraction:
    """The fewest days a certificate of `lifetime` days can have left when acme.sh's cron job
    makes its `attempt`th try (1 = the first) to renew it, issued with --days `days`.

    From acme.sh 3.1.3 (the file acme.sh): issue() saves Le_RenewalDays (--days, else
    DEFAULT_RENEW, 30) and sets Le_NextRenewTime = Le_CertCreateTime + Le_RenewalDays days
    - 86400 s, a day early; renew() skips a certificate while now < Le_NextRenewTime. The
    cron job installcronjob() writes runs once a day at a fixed minute, so try k comes less
    than k days after Le_NextRenewTime. Le_CertCreateTime is taken after the CA signed, and
    notAfter is at most issue time - CERT_BACKDATE_DAYS + lifetime. ARI plays no part: 3.1.3
    reads the directory's renewalInfo URL but never calls its _get_ARI().
    """
    return Fraction(lifetime) - CERT_BACKDATE_DAYS - (days - 1) - attempt


def acme_renewal_days(lifetimes: Sequence[float] = catalog.CERT_LIFETIMES_DAYS,
                      keep: Fraction = catalog.CERT_RENEW_KEEP,
                      attempts: int = catalog.ACME_RENEWAL_ATTEMPTS) -> int:
    """acme.sh's --days: the most days after issue such that, for every lifetime, the first
    `attempts` daily renewal tries all come while at least `keep` of the lifetime is left.

    --days is fixed when acme.sh issues a certificate, before the CA has said how long it
    will be valid, and kept for every renewal; so it must suit the shortest lifetime Let's
    Encrypt will hand out, and longer ones are simply renewed earlier than they need be
    (a 90-day certificate about every 27 days). No lifetime is read from the certificate:
    acme.sh 3.1.3 has no "renew at a share of the lifetime" setting.
    """
    days = math.floor(min(Fraction(lifetime) * (1 - keep) + 1 - attempts - CERT_BACKDATE_DAYS
                          for lifetime in lifetimes))
    if days < 1:
        raise ValueError(f"no --days renews a {min(lifetimes)}-day certificate {attempts} times "
                         f"with {keep} of it left")
    return days

"""Hostile settings, shared by the unit and program tests (issue 13): values that would add a
line to a configuration file, open the relay or SSH to the internet in other words than
0.0.0.0/0, let anyone send as our domains, lock pulumi up out, loop mail forever, or hide a
typo. Each entry is (key, value, what the fix must mention): parse must refuse it, naming the
key, with a fix.

The line-break inputs are made from the schema (every key of Pulumi.yaml), not listed by hand,
so a key added later is tried too.
"""

from __future__ import annotations

import re
from typing import Any

from mailserver.core import settings
from tests.support import dev_raw

# What a line break in a postfix value would smuggle into main.cf.
INJECTION = "\nmynetworks = 0.0.0.0/0"
# Other characters that break a line or hide in a value: carriage return, NUL, escape, C1
# next line, Unicode line separator, right-to-left override.
CONTROLS = ("\r", "\x00", "\x1b", "\x85", "\u2028", "\u202e")


def schema_keys() -> list[settings.Key]:
    return list(settings.schema().values())


def string_keys() -> list[settings.Key]:
    """Every key whose value is text: strings, and arrays of strings."""
    return [k for k in schema_keys() if k.type in ("string", "array")]


def with_control(key: settings.Key, control: str = INJECTION) -> Any:
    """A raw value for `key` (as Pulumi hands it over: integers and booleans as text) that is
    valid but for `control` inside it."""
    base = dev_raw().get(key.name, key.default)
    if key.type == "array":
        items = list(base or ["x"])
        return [*items[:-1], items[-1] + control]
    if key.type in ("integer", "boolean"):
        return str(base).lower() + control
    return f"{base or 'x'}{control}"


def field_of(key: str) -> str:
    """The Settings field a schema key becomes."""
    return {"cloudflareZoneIds": "zone_ids"}.get(key) or re.sub(r"(?<!^)(?=[A-Z])", "_", key).lower()


WIDE_NETWORKS: list[list[str]] = [
    ["0.0.0.0/0"],
    ["::/0"],
    ["0.0.0.0/1", "128.0.0.0/1"],
    ["::/1", "8000::/1"],
    [f"{n}.0.0.0/8" for n in range(1, 9)],  # many /8s
    ["1.0.0.0/8"],  # one public /8: 0.45% of the routable IPv4 internet
    ["[::ffff:0.0.0.0]/96"],  # every IPv4 address, written as IPv6
    ["[2002::]/16"],  # 6to4: every IPv4 address again
    ["[64:ff9b::]/96"],  # NAT64
    ["[2000::]/3"],  # the whole routable IPv6 internet
    ["[2a00::]/8"],
    ["127.0.0.1/32", "0.0.0.0/2", "64.0.0.0/2", "128.0.0.0/2", "192.0.0.0/2"],  # quarters
]

# (key, value, fragment of the fix)
HOSTILE: list[tuple[str, Any, str]] = [
    # Open relay in other words than 0.0.0.0/0.
    *[("mynetworks", nets, "127.0.0.1/32") for nets in WIDE_NETWORKS],
    # SSH to the internet at large, without allowSshFromAnywhere.
    *[("adminCidrs", [n.replace("[", "").replace("]", "") for n in nets], "allowSshFromAnywhere")
      for nets in WIDE_NETWORKS],
    # Relay restrictions that permit strangers, by any route.
    *[("relayRestrictions", ["permit_mynetworks", item, "reject_unauth_destination"], "permit_sasl_authenticated")
      for item in ("permit", "permit_mx_backup", "permit_tls_all_clientcerts", "permit_tls_clientcerts",
                   "permit_dnswl_client", "permit_rhswl_client", "permit_inet_interfaces",
                   "check_client_access", "check_recipient_access", "check_sender_access",
                   "check_helo_access", "check_sasl_access", "check_ccert_access", "check_client_a_access",
                   "check_policy_service", "lmdb:/etc/postfix/access", "static:ok", "inline:{ok}",
                   "my_restriction_class")],
    ("relayRestrictions", ["permit_sasl_authenticated", "warn_if_reject", "reject_unauth_destination"],
     "permit_sasl_authenticated"),
    ("relayRestrictions", ["permit_sasl_authenticated", "permit_mynetworks"], "reject_unauth_destination"),
    ("relayRestrictions", [], "reject_unauth_destination"),
    ("relayRestrictions", ["permit_sasl_authenticated", "reject_unauth_destination", "permit"],
     "reject_unauth_destination"),
    # SPF that authorises the internet (or is not SPF).
    *[("spfExtra", [term], "remove") for term in ("+all", "?all", "~all", "all", "+ALL")],
    *[("spfExtra", terms, "ip4:198.51.100.0/24") for terms in (
        ["ip4:0.0.0.0/0"], ["+ip4:0.0.0.0/1", "ip4:128.0.0.0/1"], ["ip6:::/0"], ["?ip4:0.0.0.0/0"],
        ["~ip4:0.0.0.0/0"], ["ip4:1.0.0.0/8"], ["ip6:2000::/3"], ["a/0"], ["mx/0"], ["a:example.org/1"],
        ["a//0"], ["mx:example.org//8"], ["ip6:::ffff:0:0/96"], [f"ip4:{n}.0.0.0/8" for n in range(11, 15)],
        ["ip4:198.51.100.7/0"])],
    *[("spfExtra", [term], "include:") for term in (
        'include:"evil', "include:evil.example\\", "include:", "include", "exists:", "ptr", "ptr:example.org",
        "ip4:1.2.3.4/33", "ip4:::1", "ip6:1.2.3.4", "a:exa mple.org", "a:/24", "include:-bad.example",
        "exp=", "+redirect=example.org", "include:example.org;rm", "v=spf1")],
    ("spfExtra", ["redirect=_spf.example.org"], "include:"),
    # A login user sshd refuses, or one that is more than a user name to AllowUsers.
    *[("sshUser", user, "ec2-user") for user in (
        "root", "ROOT", "postfix", "dovecot", "vmail", "nobody", "bin", "daemon", "sshd", "_rspamd",
        "ec2-user root", "*", "ec2-user@198.51.100.7", "!root", "ec2-user,root", "root ", "0", "-oProxyCommand")],
    # Alias loops of any length.
    ("aliases", ["loop@example.com=loop@example.com"], "remove loop@example.com"),
    ("aliases", ["loop@example.com=loop@example.com,alice@example.com"], "remove loop@example.com"),
    ("aliases", ["a@example.com=b@example.com", "b@example.com=a@example.com"], "point one"),
    ("aliases", ["a@example.com=b@example.com", "b@example.com=c@example.net", "c@example.net=a@example.com"],
     "point one"),
    ("aliases", [f"l{i}@example.com=l{(i + 1) % 6}@example.com" for i in range(6)], "point one"),
    ("aliases", ["a@example.com=alice@example.com,b@example.com", "b@example.com=bob@example.net,a@example.com"],
     "point one"),
    ("aliases", ["postmaster@example.com=abuse@example.com", "abuse@example.com=postmaster@example.com"],
     "point one"),
    # Free-text postfix values that say more than they should.
    ("smtpdBanner", "$myhostname ESMTP $mail_version", "$myhostname ESMTP"),
    ("smtpdBanner", "$myhostname ${relayhost}", "$myhostname ESMTP"),
    ("smtpdBanner", "$myhostname ${myhostname?x}", "$myhostname ESMTP"),
    ("smtpdBanner", '$myhostname "quoted"', "$myhostname ESMTP"),
    ("smtpdBanner", "$myhostname ESMTP caf\u00e9", "$myhostname ESMTP"),
    ("smtpdBanner", "$myhostname " + "x" * 300, "$myhostname ESMTP"),
    ("myorigin", "example.com relayhost", "$mydomain"),
    ("myorigin", "$relayhost", "$mydomain"),
    ("inetInterfaces", "all, 0.0.0.0 evil", "use all"),
    ("inetInterfaces", "$myhostname", "use all"),
    ("inetInterfaces", ",", "use all"),
    ("mydestination", "$myhostname, lmdb:/etc/postfix/relay", "localhost"),
    ("mydestination", "$myhostname, $mynetworks", "localhost"),
    ("mydestination", "$myhostname, /etc/postfix/destinations", "localhost"),
    # Numbers outside their range.
    ("rootVolumeSize", 10**9, "use 20"),
    ("messageSizeLimit", 10**12, "10485760"),
    ("mailboxSizeLimit", 2**63, "10485760"),
    ("passwordMinLength", 10**6, "use 12"),
    ("fail2banBanTime", -1, "at least 60"),  # fail2ban reads -1 as a ban forever
    ("fail2banBanTime", 10**10, "at most"),
    ("fail2banFindTime", 10**10, "at most"),
    ("smtpdAuthRateLimit", 10**9, "use 30"),
    ("dataVolumeSize", 1.5, "<number>"),  # a YAML float that int() would cut to 1
    ("postscreenDnsblThreshold", 10**9, "use 3"),
    ("postscreenDnsblSites", ["zen.spamhaus.org=127.0.0.[2..11]*99999999999"], "name[=reply filter][*weight]"),
    ("postscreenDnsblSites", ["bl.example=127.0.0.2*" + "9" * 5000], "name[=reply filter][*weight]"),  # int() limit
    # Names that are not what they look like.
    ("domains", ["stra\u00dfe.example", "example.net"], "xn--"),  # IDNA 2003 and 2008 disagree on it
    ("domains", ["xn--zzzz.example", "example.net"], "xn--"),  # not punycode
    ("hostname", "mail.example.com extra", "mail.example.com"),
    ("acmeEmail", 'x"@example.com', "you@example.org"),
    ("acmeEmail", "x$(reboot)@example.com", "you@example.org"),
    ("sshPublicKey", "ssh-ed25519 AAAAnot-base64!", "paste the one line"),
    # An ed25519 key labelled ssh-rsa.
    ("sshPublicKey", "ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIB7mOcKkEyQ3x5cV0g1Yk8tZr2sLhP4nWqU9aXbDeFjH",
     "paste the one line"),
    ("sshPublicKey", "-----BEGIN OPENSSH PRIVATE KEY-----", "paste the one line"),
    ("dkimSelector", "mail;rm", "mail2026"),
    ("dataVolumeSnapshotId", "snap-0123456789abcdef0 --force", "snap-"),
    # The spam filter (issue 15): a threshold no message reaches turns filtering off unseen; one
    # every message reaches refuses all mail; junk at or above reject files nothing; a fraction
    # int() would cut; a number smuggled with rspamd syntax after it.
    ("spamRejectScore", 10**9, "use 15"),
    ("spamRejectScore", -1, "use 15"),
    ("spamRejectScore", 1, "use 15"),
    ("spamJunkScore", 0, "use 6"),
    ("spamJunkScore", 20, "use 6"),
    ("spamJunkScore", 6.5, "<number>"),
    ("spamRejectScore", "15; reject = 0", "<number>"),
    ("spamFilter", "yes", "true"),
    ("greylisting", "on", "true"),
    # The backup MX's name goes into rspamd's trust (external_relay): a name outside our domains
    # or with rspamd syntax in it must not get there.
    ("secondaryHostname", 'mx2.example.com"]; enabled = false; x = ["', "mx2.example.com"),
    ("selfCheckDeferredMax", 10**9, "use 10"),
    ("snapshotCopyRegion", "eu-west-1; rm", "eu-west-1"),
]

# Keys nobody reads, in the stack file: (key as written, what the fix must mention).
UNKNOWN_STACK_KEYS: list[tuple[str, str]] = [
    ("mailsrever:domains", "mailserver:domains"),
    ("mailserver:domain", "domains"),
    ("mailserver:mailboxPassword", "mailboxPasswords"),
    ("aws:regoin", "region"),
    ("aws:Region", "region"),
    ("cloudflare:apitoken", "apiToken"),
    ("cloudfare:apiToken", "cloudflare:apiToken"),
    ("pulumi:disable-default-provider", "disable-default-providers"),
    ("tls:proxyy", "proxy"),
    ("awss:region", "aws:region"),
]

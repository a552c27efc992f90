"""relay: ses, without AWS: the resource graph under mocks (the settings and the pure plan
are in tests/unit/test_ses.py). With relay ses the SES identities, their
Easy DKIM CNAMEs, the MAIL FROM MX and SPF records, an IAM user allowed nothing but
ses:SendRawEmail on exactly those identities, and its access key exist, and the SMTP login
reaches the host only as a secret stdin. With relay none none of it exists.
"""

from __future__ import annotations

import json

import pytest
from pulumi.runtime import rpc

from mailserver.core import outputs, relay
from tests.cloud_facts import easy_dkim_tokens
from tests.program.harness import (
    ACCESS_KEY,
    ACCOUNT,
    COMMAND,
    DNS,
    IAM_USER,
    IAM_USER_POLICY,
    INSTANCE,
    PASSWORDS,
    SES_ACCESS_KEY_ID,
    SES_IDENTITY,
    SES_MAIL_FROM,
    SES_PROVIDER_PASSWORD,
    SES_SECRET_KEY,
    Graph,
    build,
    build_refused,
    bundle_files,
    plain,
    visible_strings,
)
from tests.support import main_cf_value

DOMAINS = ("example.com", "example.net")
ZONES = {"example.com": "023e105f4ecef8ad9ca31a8372d0c353", "example.net": "5b7d3f0c1e2a4b6c8d9e0f1a2b3c4d5e"}
SES_TYPES = (SES_IDENTITY, SES_MAIL_FROM, IAM_USER, IAM_USER_POLICY, ACCESS_KEY)


@pytest.fixture(scope="module")
def ses() -> Graph:
    return build({"relay": "ses"})


@pytest.fixture(scope="module")
def direct() -> Graph:
    return build({"relay": "none"})


def smtp_password(region: str = "eu-central-1") -> str:
    return relay.ses_smtp_password(SES_SECRET_KEY, region)


def test_relay_none_creates_nothing_of_ses(direct: Graph) -> None:
    for typ in SES_TYPES:
        assert not direct.of(typ), typ
    assert not [r for r in direct.resources if r.typ == "mailserver:index:SesRelay"]
    assert not [r for r in direct.of(COMMAND) if r.name.endswith("-relay-credentials")]
    for r in direct.of(DNS):
        assert "amazonses" not in str(plain(r.inputs)) and not r.inputs["name"].startswith("bounce.")
    assert "sesRelay" not in direct.exports
    assert direct.exports["port25Warning"].value == outputs.PORT25_WARNING
    main_cf = bundle_files(direct)["files/etc/postfix/main.cf"]
    # Direct delivery: TLS when offered, DANE-verified where the receiver publishes TLSA (the default).
    assert main_cf_value(main_cf, "relayhost") is None and main_cf_value(main_cf, "smtp_tls_security_level") == "dane"


def test_one_identity_per_domain_with_easy_dkim_in_the_ses_region(ses: Graph) -> None:
    identities = {r.inputs["emailIdentity"]: r for r in ses.of(SES_IDENTITY)}
    assert set(identities) == set(DOMAINS)
    for ident in identities.values():
        assert ident.inputs["dkimSigningAttributes"] == {"nextSigningKeyLength": "RSA_2048_BIT"}
        assert ident.inputs["region"] == "eu-central-1"
        assert "domainSigningPrivateKey" not in str(ident.inputs)  # Easy DKIM, not bring-your-own


def test_dkim_cnames_for_every_token(ses: Graph) -> None:
    cnames = {r.inputs["name"]: r.inputs for r in ses.of(DNS) if r.inputs["type"] == "CNAME"}
    want = {f"{t}._domainkey.{d}": (d, t) for d in DOMAINS for t in easy_dkim_tokens(d)}
    assert set(cnames) == set(want)
    for name, (d, t) in want.items():
        rec = cnames[name]
        assert rec["content"] == f"{t}.dkim.amazonses.com"
        assert rec["zoneId"] == ZONES[d] and rec["proxied"] is False and rec["ttl"] > 0


def test_custom_mail_from_with_its_mx_and_spf(ses: Graph) -> None:
    mail_from = {r.inputs["emailIdentity"]: r.inputs for r in ses.of(SES_MAIL_FROM)}
    assert set(mail_from) == set(DOMAINS)
    for d in DOMAINS:
        assert mail_from[d]["mailFromDomain"] == f"bounce.{d}"
        assert mail_from[d]["behaviorOnMxFailure"] == "USE_DEFAULT_VALUE"
        assert mail_from[d]["region"] == "eu-central-1"
        records = {r.inputs["type"]: r.inputs for r in ses.of(DNS) if r.inputs["name"] == f"bounce.{d}"}
        assert set(records) == {"MX", "TXT"}
        assert records["MX"]["content"] == "feedback-smtp.eu-central-1.amazonses.com"
        assert records["MX"]["priority"] == 10
        assert records["TXT"]["content"] == '"v=spf1 include:amazonses.com -all"'
        assert all(r["zoneId"] == ZONES[d] and r["proxied"] is False for r in records.values())


def test_iam_user_may_only_send_as_the_mail_domains(ses: Graph) -> None:
    user = ses.one(IAM_USER)
    attached = ses.one(IAM_USER_POLICY)
    assert attached.inputs["user"] == f"{user.name}-7f3e2a1"  # the user's (auto-generated) name
    assert user.urn in attached.dependencies
    doc = json.loads(attached.inputs["policy"])
    (statement,) = doc["Statement"]
    assert statement["Effect"] == "Allow"
    actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
    assert actions == ["ses:SendRawEmail"]
    assert sorted(statement["Resource"]) == sorted(
        f"arn:aws:ses:eu-central-1:{ACCOUNT}:identity/{d}" for d in DOMAINS)
    assert not {"NotAction", "NotResource", "Condition"} & set(statement)
    # no other policy of any kind reaches the user (the snapshot role's policy goes to a role
    # that only dlm.amazonaws.com may assume, tests/program/test_storage.py)
    assert not [r for r in ses.resources if r.typ.startswith("aws:iam/") and "olicy" in r.typ
                and r is not attached and "role" not in r.inputs]


def test_access_key_and_the_login_travel_only_as_secrets(ses: Graph) -> None:
    key = ses.one(ACCESS_KEY)
    assert key.inputs["user"] == f"{ses.one(IAM_USER).name}-7f3e2a1"
    assert {"secret", "sesSmtpPasswordV4"} <= set(key.additional_secret_outputs)
    login = ses.one(COMMAND, "-relay-credentials")
    assert rpc.is_rpc_secret(login.inputs["stdin"])
    # username = access key id; password = SigV4 conversion of the secret for the SES region
    assert plain(login.inputs["stdin"]) == f"{SES_ACCESS_KEY_ID}\t{smtp_password()}\n"
    assert login.inputs["logging"] == "none"
    assert {"stdout", "stderr"} <= set(login.additional_secret_outputs)
    assert login.inputs["create"].startswith("sudo bash /var/lib/mailserver/scripts/set-relay-credentials.sh # ")
    deps = set(login.dependencies)
    assert {ses.one(COMMAND, "-wait").urn, ses.one(COMMAND, "-config").urn} <= deps
    # the login reaches the host only once the policy lets it send (SES bounces otherwise)
    assert ses.one(IAM_USER_POLICY).urn in deps and key.urn in deps


def test_no_credential_in_user_data_bundle_exports_or_any_visible_input(ses: Graph) -> None:
    credentials = (SES_SECRET_KEY, smtp_password(), SES_PROVIDER_PASSWORD, *PASSWORDS.values())
    user_data = ses.one(INSTANCE).inputs["userData"]
    texts = list(bundle_files(ses).values())
    for secret in credentials:
        assert secret not in user_data
        assert not any(secret in t for t in texts)
        for r in ses.resources:
            for text in visible_strings(r.inputs):
                assert secret not in text, f"{secret!r} visible in {r.typ} {r.name}"
        for name, export in ses.exports.items():
            assert export.secret or secret not in json.dumps(export.value, default=str), name
    # the access key id is not a secret by itself, but it is no one's business either
    visible = {k: v.value for k, v in ses.exports.items() if not v.secret}
    assert SES_ACCESS_KEY_ID not in json.dumps(visible, default=str)


def test_exports_name_the_relay_and_how_to_leave_the_sandbox(ses: Graph) -> None:
    export = ses.exports["sesRelay"]
    assert not export.secret
    e = export.value
    assert e["endpoint"] == "[email-smtp.eu-central-1.amazonaws.com]:587" and e["region"] == "eu-central-1"
    assert e["identities"] == list(DOMAINS) and e["mailFromDomains"] == [f"bounce.{d}" for d in DOMAINS]
    assert "sandbox" in e["sandbox"] and "production access" in e["sandbox"].lower()
    assert len(e["dnsRecords"]) == len(DOMAINS) * 5
    assert ses.exports["port25Warning"].value == outputs.PORT25_SES_NOTE


def test_main_cf_relays_with_verified_tls_and_sasl(ses: Graph) -> None:
    main_cf = bundle_files(ses)["files/etc/postfix/main.cf"]
    assert main_cf_value(main_cf, "relayhost") == "[email-smtp.eu-central-1.amazonaws.com]:587"
    assert main_cf_value(main_cf, "smtp_sasl_auth_enable") == "yes"
    assert main_cf_value(main_cf, "smtp_sasl_security_options") == "noanonymous"
    assert main_cf_value(main_cf, "smtp_sasl_password_maps") == "lmdb:/etc/postfix/sasl_passwd"
    assert main_cf_value(main_cf, "smtp_tls_security_level") == "secure"
    assert main_cf_value(main_cf, "smtp_tls_CAfile") == "/etc/pki/tls/certs/ca-bundle.crt"
    assert main_cf_value(main_cf, "smtp_tls_secure_cert_match") == "email-smtp.eu-central-1.amazonaws.com"
    # local delivery is untouched
    assert main_cf_value(main_cf, "virtual_transport") == "lmtp:unix:private/dovecot-lmtp"


def test_ses_region_moves_identities_endpoint_feedback_mx_and_password() -> None:
    g = build({"relay": "ses", "sesRegion": "us-west-2"})
    assert {r.inputs["region"] for r in g.of(SES_IDENTITY) + g.of(SES_MAIL_FROM)} == {"us-west-2"}
    mx = {r.inputs["content"] for r in g.of(DNS) if r.inputs["name"].startswith("bounce.") and r.inputs["type"] == "MX"}
    assert mx == {"feedback-smtp.us-west-2.amazonses.com"}
    assert main_cf_value(bundle_files(g)["files/etc/postfix/main.cf"], "relayhost") == \
        "[email-smtp.us-west-2.amazonaws.com]:587"
    stdin = plain(g.one(COMMAND, "-relay-credentials").inputs["stdin"])
    login = f"{SES_ACCESS_KEY_ID}\t{smtp_password('us-west-2')}\n"
    assert stdin == login != f"{SES_ACCESS_KEY_ID}\t{smtp_password()}\n"


def test_relay_ses_without_any_region_fails_before_any_resource() -> None:
    error, mocks, monitor = build_refused({"relay": "ses", "aws:region": None})
    assert "sesRegion" in error.keys
    assert mocks.new_resource_calls == 0 and not monitor.records
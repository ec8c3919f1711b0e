"""`flask saml import-metadata` and `flask saml show`."""
from models import AuditEvent, settings

from ..saml_idp import ACS_URL, SP_ENTITY_ID, TestIdP, make_key_pair, sign_in


def test_import_metadata_and_activate(app, client, admin, idp, tmp_path):
    path = tmp_path / "okta.xml"
    path.write_text(idp.metadata_xml())
    result = app.test_cli_runner().invoke(args=["saml", "import-metadata", str(path), "--label", "Okta",
                                                "--activate"])
    assert result.exit_code == 0, result.output
    assert f"Imported the IdP {idp.entity_id}." in result.output
    with app.app_context():
        values = settings.section("saml")
        assert values["active"] and values["label"] == "Okta" and values["idp_sso_url"] == idp.sso_url
        assert AuditEvent.query.filter_by(action="settings.update", actor="cli").count() == 1
    assert sign_in(client, idp).headers["Location"] == "/"


def test_import_without_activate_leaves_saml_off(app, admin, idp, tmp_path):
    path = tmp_path / "okta.xml"
    path.write_text(idp.metadata_xml())
    assert app.test_cli_runner().invoke(args=["saml", "import-metadata", str(path)]).exit_code == 0
    with app.app_context():
        assert settings.get("saml", "active") is False and settings.get("saml", "idp_entity_id") == idp.entity_id


def test_import_refuses_bad_metadata_with_the_reason(app, admin, tmp_path):
    path = tmp_path / "bad.xml"
    path.write_text("<md:EntityDescriptor")
    result = app.test_cli_runner().invoke(args=["saml", "import-metadata", str(path), "--activate"])
    assert result.exit_code != 0 and "The metadata is not valid XML" in result.output
    with app.app_context():
        assert settings.get("saml", "active") is False


def test_import_refuses_an_expired_certificate(app, admin, tmp_path):
    idp = TestIdP(keys=make_key_pair("old-idp", days=-1, not_before_days=-400))
    path = tmp_path / "old.xml"
    path.write_text(idp.metadata_xml())
    result = app.test_cli_runner().invoke(args=["saml", "import-metadata", str(path)])
    assert result.exit_code != 0 and "expired on" in result.output


def test_show_prints_the_idp_and_the_values_to_paste(app, saml):
    result = app.test_cli_runner().invoke(args=["saml", "show"])
    assert result.exit_code == 0
    for text in (saml.entity_id, saml.sso_url, "CN=lobby-test-idp, O=Okta", ACS_URL, SP_ENTITY_ID, "Persistent",
                 "initiate-sp-login", "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn  (URI Reference)"
                 "  user.login", "jobtitle  (Basic)  user.title"):
        assert text in result.output, text


def test_show_when_nothing_is_configured(app, admin):
    result = app.test_cli_runner().invoke(args=["saml", "show"])
    assert result.exit_code == 0 and "not configured" in result.output

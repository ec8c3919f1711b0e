"""Reading IdP metadata and certificates (no database)."""
import pytest

from blueprints.saml.metadata import (MetadataError, describe_certificate, idp_metadata_xml, parse_idp_metadata,
                                      split_pem_certificates)

from ..saml_idp import TestIdP, make_key_pair


def test_okta_metadata_is_parsed():
    idp = TestIdP()
    parsed = parse_idp_metadata(idp.metadata_xml())
    assert (parsed.entity_id, parsed.sso_url, parsed.certificates) == (idp.entity_id, idp.sso_url, [idp.keys.cert_pem])


def test_redirect_binding_location_is_preferred():
    idp = TestIdP()
    xml = idp.metadata_xml().replace(f'HTTP-POST" Location="{idp.sso_url}"', 'HTTP-POST" Location="https://post.example/sso"')
    assert parse_idp_metadata(xml).sso_url == idp.sso_url


def test_entities_descriptor_with_one_idp():
    xml = TestIdP().metadata_xml().split("?>", 1)[1]
    wrapped = f'<md:EntitiesDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata">{xml}</md:EntitiesDescriptor>'
    assert parse_idp_metadata(wrapped).entity_id == TestIdP().entity_id


def test_entities_descriptor_with_two_idps_is_refused():
    one = TestIdP().metadata_xml().split("?>", 1)[1]
    two = TestIdP(entity_id="http://www.okta.com/exk2").metadata_xml().split("?>", 1)[1]
    xml = f'<md:EntitiesDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata">{one}{two}</md:EntitiesDescriptor>'
    with pytest.raises(MetadataError, match="describes 2 identity providers"):
        parse_idp_metadata(xml)


def test_billion_laughs_is_refused():
    bomb = ('<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;">]>'
            "<lolz>&lol2;</lolz>")
    with pytest.raises(MetadataError, match="DOCTYPE or entity declaration"):
        parse_idp_metadata(bomb)


def test_missing_entity_id_and_sso_service():
    idp = TestIdP()
    with pytest.raises(MetadataError, match="has no entityID"):
        parse_idp_metadata(idp.metadata_xml().replace(f'entityID="{idp.entity_id}"', ""))
    with pytest.raises(MetadataError, match="no SingleSignOnService"):
        parse_idp_metadata(idp.metadata_xml().replace("SingleSignOnService", "ArtifactResolutionService"))


def test_pem_box_with_bare_base64_and_several_blocks():
    one, two = make_key_pair("one"), make_key_pair("two")
    assert split_pem_certificates(one.cert_body) == [one.cert_pem]
    assert split_pem_certificates(one.cert_pem + "junk between\n" + two.cert_pem) == [one.cert_pem, two.cert_pem]
    with pytest.raises(MetadataError, match="not a certificate"):
        split_pem_certificates("-----BEGIN PRIVATE KEY-----\nQUJD\n-----END PRIVATE KEY-----")


def test_certificate_description():
    info = describe_certificate(make_key_pair("desc-idp").cert_pem)
    assert info.subject == "CN=desc-idp, O=Okta" and info.self_signed
    assert len(info.fingerprint_sha256) == 95 and not info.problems and not info.warnings


def test_generated_pysaml2_metadata_carries_only_parsed_values():
    idp = TestIdP()
    parsed = parse_idp_metadata(idp.metadata_xml().replace("</md:IDPSSODescriptor>",
                                                           "<md:Extensions>anything</md:Extensions>"
                                                           "</md:IDPSSODescriptor>"))
    xml = idp_metadata_xml(parsed)
    assert "anything" not in xml and idp.keys.cert_body in xml and "HTTP-Redirect" in xml


def test_pysaml2_client_is_configured_strictly():
    """xmlsec1 (never XMLSecurity), keys only from metadata, unknown attributes kept, no unsolicited."""
    from blueprints.saml.metadata import IdpDescription
    from blueprints.saml.service import Provider, ServiceProvider, client_for

    idp = TestIdP()
    provider = Provider(active=True, label="SSO", idp=IdpDescription(idp.entity_id, idp.sso_url, [idp.keys.cert_pem]),
                        clock_skew_seconds=120, jit_create=True, group_attribute="", attribute_map={},
                        flight_recorder_size=5)
    client = client_for(ServiceProvider("https://lobby.test"), provider)
    assert client.config.crypto_backend == "xmlsec1"
    from saml2.sigver import CryptoBackendXmlSec1
    assert isinstance(client.sec.crypto, CryptoBackendXmlSec1)
    assert client.sec.only_use_keys_in_metadata is True
    assert client.config.allow_unknown_attributes is True
    assert client.allow_unsolicited is False and client.want_assertions_or_response_signed is True
    assert client.config.accepted_time_diff == 120
    # The same settings give the same (cached) client; other settings a new one.
    assert client_for(ServiceProvider("https://lobby.test"), provider) is client
    assert client_for(ServiceProvider("https://other.test"), provider) is not client

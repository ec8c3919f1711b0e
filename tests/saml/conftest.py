"""Fixtures for the SAML tests: an Okta-like test IdP and a Lobby configured to trust it."""
import pytest

from ..saml_idp import TestIdP, configure_saml


@pytest.fixture
def idp():
    return TestIdP()


@pytest.fixture
def saml(app, idp, admin):
    """Lobby with SAML2 SSO active and the test IdP configured (an admin exists, so no set-up page)."""
    configure_saml(app, idp)
    return idp

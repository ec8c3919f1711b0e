"""An AuthnRequest answers once and an assertion counts once, across every process on the database."""
import re
import threading

from models import AuditEvent, SamlOutstandingRequest, SamlSeenAssertion, db

from ..saml_idp import post_response, same_browser, start_login


def reason_of(app, reply):
    assert reply.status_code == 303
    match = re.search(r"ref=([A-Z0-9]{8})", reply.headers["Location"])
    assert match, reply.headers["Location"]
    with app.app_context():
        return AuditEvent.query.filter_by(reference=match.group(1)).one().reason


def test_replay_of_the_same_response_is_refused(app, client, saml):
    request = start_login(client)
    xml = saml.response(request.id)
    assert post_response(client, xml, request.relay_state).headers["Location"] == "/"
    again = app.test_client()
    reason = reason_of(app, post_response(again, xml, request.relay_state))
    assert reason.startswith("Replay: assertion")
    assert again.get("/").status_code == 302


def test_replay_through_a_second_app_instance(app, make_app, client, saml):
    """Another process on the same database: the replay cache and request store are shared."""
    request = start_login(client)
    xml = saml.response(request.id)
    assert post_response(client, xml, request.relay_state).headers["Location"] == "/"
    other_process = make_app()
    stranger = other_process.test_client()
    reason = reason_of(other_process, post_response(stranger, xml, request.relay_state))
    assert reason.startswith("Replay: assertion")
    assert stranger.get("/").status_code == 302


def test_request_started_in_one_process_completes_in_another(app, make_app, saml):
    browser = app.test_client()
    request = start_login(browser)
    other = same_browser(browser, make_app().test_client())
    assert post_response(other, saml.response(request.id), request.relay_state).headers["Location"] == "/"


def test_used_in_response_to_with_a_fresh_assertion_is_refused(app, client, saml):
    """The IdP (or an attacker holding its key) cannot answer one AuthnRequest twice."""
    request = start_login(client)
    assert post_response(client, saml.response(request.id), request.relay_state).headers["Location"] == "/"
    reason = reason_of(app, post_response(app.test_client(), saml.response(request.id), request.relay_state))
    assert "does not name an AuthnRequest this Lobby sent and still awaits" in reason


def test_replay_cache_catches_an_old_assertion_id_on_a_new_request(app, client, saml):
    first = start_login(client)
    assert post_response(client, saml.response(first.id, assertion_id="id-reused-assertion"),
                         first.relay_state).headers["Location"] == "/"
    second = start_login(app.test_client())
    reply = post_response(app.test_client(), saml.response(second.id, assertion_id="id-reused-assertion"),
                          second.relay_state)
    assert reason_of(app, reply) == "Replay: assertion 'id-reused-assertion' was already accepted once"
    with app.app_context():
        # The refused Response did not consume the second request.
        assert db.session.get(SamlOutstandingRequest, second.id) is not None
        assert db.session.get(SamlSeenAssertion, "id-reused-assertion").issuer == saml.entity_id


def test_refused_response_does_not_consume_the_request(app, client, saml):
    """Garbage posted with a real request ID must not cancel the person's sign-in in progress."""
    request = start_login(client)
    post_response(app.test_client(), saml.response(request.id, audience="https://x.example"), request.relay_state)
    assert post_response(client, saml.response(request.id), request.relay_state).headers["Location"] == "/"


def test_concurrent_double_use_signs_in_once(app, make_app, saml):
    """Two processes receive the same Response at the same moment: exactly one accepts it."""
    browser = app.test_client()
    request = start_login(browser)
    xml = saml.response(request.id)
    apps = [app, make_app()]
    barrier = threading.Barrier(2)
    outcomes = []

    def post(instance):
        client = same_browser(browser, instance.test_client())
        barrier.wait()
        outcomes.append(post_response(client, xml, request.relay_state).headers["Location"])

    threads = [threading.Thread(target=post, args=(instance,)) for instance in apps]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(outcomes)[0] == "/" and len(outcomes) == 2
    assert "/saml2/failed" in sorted(outcomes)[1]
    with app.app_context():
        assert AuditEvent.query.filter_by(action="auth.login", outcome="success").count() == 1
        assert AuditEvent.query.filter_by(action="auth.login", outcome="failure").count() == 1


def test_an_assertion_id_too_long_to_remember_is_refused(app, client, saml):
    """The replay cache holds IDs of up to 255 characters; a longer one could not be remembered (on
    PostgreSQL it failed the check with a database error), so it is refused, saying why."""
    request = start_login(client)
    reply = post_response(client, saml.response(request.id, assertion_id="id" + "x" * 300), request.relay_state)
    assert reason_of(app, reply) == ("The Assertion ID is 302 characters long; Lobby can remember at most 255 to "
                                     "refuse a replay")
    assert client.get("/").status_code == 302

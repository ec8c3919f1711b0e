def test_login_page_answers(client, admin):
    response = client.get("/login")
    assert response.status_code == 200
    assert "Sign in to Lobby" in response.get_data(as_text=True)

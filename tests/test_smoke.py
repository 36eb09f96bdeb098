from conftest import Api, Server
import httpx


def test_api_in_process(api: Api) -> None:
    alice = api.user("alice@example.com")
    assert alice.client.get("/account").json()["email"] == "alice@example.com"


def test_real_server(server: Server) -> None:
    token = server.create_user("root@example.com", admin=True)
    reply = httpx.get(f"{server.url}/account", headers={"Authorization": f"Bearer {token}"})
    assert reply.json()["admin"] is True

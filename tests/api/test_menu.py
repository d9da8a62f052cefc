"""/api/menu: the public menu and the agent's menu text, both cached."""

from __future__ import annotations

import httpx

from ogcache.runtime import Runtime
from ogcache.schemas import MenuItemUpdate
from tests.api.conftest import assert_error, namespace_hits, one_stack


async def test_the_menu_is_public_and_leaves_out_concentrates(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/menu")
    assert response.status_code == 200
    menu = response.json()
    assert menu["include_concentrates"] is False
    assert menu["items"]
    assert not any(item["is_concentrate"] for item in menu["items"])
    assert all(item["available"] for item in menu["items"])


async def test_the_menu_with_concentrates_adds_them(client: httpx.AsyncClient) -> None:
    plain = (await client.get("/api/menu")).json()["items"]
    response = await client.get("/api/menu", params={"concentrates": "true"})
    assert response.status_code == 200
    menu = response.json()
    assert menu["include_concentrates"] is True
    concentrates = [item for item in menu["items"] if item["is_concentrate"]]
    assert concentrates
    assert len(menu["items"]) == len(plain) + len(concentrates)


async def test_second_read_of_the_menu_is_a_cache_hit(client: httpx.AsyncClient) -> None:
    first = await client.get("/api/menu")
    before = await namespace_hits(client, "menu")
    second = await client.get("/api/menu")
    assert second.json() == first.json()
    assert await namespace_hits(client, "menu") == before + 1


async def test_the_menu_context_is_plain_text_naming_the_items(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/menu/context")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert "Gelato 41" in response.text
    assert "THB" in response.text


async def test_the_menu_context_with_concentrates_is_longer(client: httpx.AsyncClient) -> None:
    plain = await client.get("/api/menu/context")
    with_concentrates = await client.get("/api/menu/context", params={"concentrates": "true"})
    assert with_concentrates.status_code == 200
    assert with_concentrates.text.startswith(plain.text.split("\n")[0])
    assert len(with_concentrates.text) > len(plain.text)


async def test_second_read_of_the_menu_context_is_a_cache_hit(client: httpx.AsyncClient) -> None:
    await client.get("/api/menu/context")
    before = await namespace_hits(client, "menu:context")
    await client.get("/api/menu/context")
    assert await namespace_hits(client, "menu:context") == before + 1


async def test_a_menu_write_is_visible_on_the_next_read(
    client: httpx.AsyncClient, seeded: Runtime
) -> None:
    item = (await client.get("/api/menu")).json()["items"][0]
    await client.get("/api/menu/context")
    await seeded.menu.update_item(item["id"], MenuItemUpdate(price_1g=1234))
    menu = (await client.get("/api/menu")).json()
    assert next(i for i in menu["items"] if i["id"] == item["id"])["price_1g"] == 1234
    assert "1g 1234 THB" in (await client.get("/api/menu/context")).text


@one_stack
async def test_a_concentrates_flag_that_is_not_a_boolean_is_422(client: httpx.AsyncClient) -> None:
    for path in ("/api/menu", "/api/menu/context"):
        response = await client.get(path, params={"concentrates": "maybe"})
        assert_error(response, 422, "validation_error")

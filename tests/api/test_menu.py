"""/api/menu: the public menu and the agent's menu text, both cached; the admin's item
management, whose writes every cached read shows from the next request."""

from __future__ import annotations

from typing import Any
from unittest.mock import ANY

import httpx
import pytest

from ogcache.runtime import Runtime
from ogcache.schemas import MenuItemUpdate
from tests.api.conftest import ADMIN, assert_error, namespace_hits, one_stack


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


# The four cached reads: both menu variants and both texts.
MENU = "/api/menu"
CONCENTRATES = "/api/menu?concentrates=true"
CONTEXT = "/api/menu/context"
CONTEXT_CONCENTRATES = "/api/menu/context?concentrates=true"
CACHED_READS = (MENU, CONCENTRATES, CONTEXT, CONTEXT_CONCENTRATES)

NEW_ITEM = {
    "name": "Koh Phangan Haze",
    "category": "TOP SHELF",
    "type": "sativa",
    "thc": 27.5,
    "price_1g": 777,
    "price_5g": 3333,
    "sort_order": 5,
}


async def warm_and_check_cached(client: httpx.AsyncClient) -> None:
    """Load all four reads, then read them again: each second read must be a cache hit, so
    that what a later test sees after a write is the cache's answer being dropped."""
    for path in CACHED_READS:
        assert (await client.get(path)).status_code == 200
    menu_hits = await namespace_hits(client, "menu")
    context_hits = await namespace_hits(client, "menu:context")
    for path in CACHED_READS:
        await client.get(path)
    assert await namespace_hits(client, "menu") == menu_hits + 2
    assert await namespace_hits(client, "menu:context") == context_hits + 2


async def read_all(client: httpx.AsyncClient) -> dict[str, Any]:
    """The items (by name) of both menus and the text of both contexts, as read now."""
    found: dict[str, Any] = {}
    for path in CACHED_READS:
        response = await client.get(path)
        assert response.status_code == 200
        is_text = path.startswith(CONTEXT)
        found[path] = response.text if is_text else {i["name"]: i for i in response.json()["items"]}
    return found


def shows(seen: dict[str, Any], read: str, name: str) -> list[str]:
    """The lines (a text) or the item (a menu, as a one-line list) naming ``name`` exactly."""
    if read.startswith(CONTEXT):
        lines = seen[read].splitlines()
        return [line for line in lines if line.startswith((f"- {name} (", f"- {name}:"))]
    return [name] if name in seen[read] else []


async def an_item(client: httpx.AsyncClient, name: str = "Gelato 41") -> dict[str, Any]:
    menu = (await client.get(MENU)).json()["items"]
    return next(item for item in menu if item["name"] == name)


async def test_admin_creates_an_item_that_every_cached_read_shows_next(
    client: httpx.AsyncClient,
) -> None:
    await warm_and_check_cached(client)
    response = await client.post("/api/menu/items", json=NEW_ITEM, headers=ADMIN)
    assert response.status_code == 201, response.text
    created = response.json()
    assert created["id"] >= 1
    assert {key: created[key] for key in NEW_ITEM} == NEW_ITEM
    assert created["available"] is True
    assert created["is_concentrate"] is False
    seen = await read_all(client)
    for path in (MENU, CONCENTRATES):
        assert seen[path]["Koh Phangan Haze"]["price_1g"] == 777
    for path in (CONTEXT, CONTEXT_CONCENTRATES):
        line = "- Koh Phangan Haze (sativa, THC 27.5%): 1g 777 THB, 5g 3333 THB"
        assert line in seen[path]


async def test_a_new_concentrate_shows_only_in_the_concentrates_variants(
    client: httpx.AsyncClient,
) -> None:
    await warm_and_check_cached(client)
    body = {"name": "Lebanese Gold", "category": "HASH", "price_1g": 900, "is_concentrate": True}
    assert (await client.post("/api/menu/items", json=body, headers=ADMIN)).status_code == 201
    seen = await read_all(client)
    assert "Lebanese Gold" in seen[CONCENTRATES]
    assert "- Lebanese Gold: 1g 900 THB" in seen[CONTEXT_CONCENTRATES]
    assert "Lebanese Gold" not in seen[MENU]
    assert "Lebanese Gold" not in seen[CONTEXT]


async def test_a_price_change_shows_on_every_cached_read_next(client: httpx.AsyncClient) -> None:
    gelato = await an_item(client)
    await warm_and_check_cached(client)
    response = await client.patch(
        f"/api/menu/items/{gelato['id']}", json={"price_1g": 4321, "price_20g": None}, headers=ADMIN
    )
    assert response.status_code == 200, response.text
    assert response.json()["price_1g"] == 4321
    assert response.json()["price_20g"] is None
    assert response.json()["price_5g"] == gelato["price_5g"]  # left out: unchanged
    seen = await read_all(client)
    for path in (MENU, CONCENTRATES):
        assert seen[path]["Gelato 41"]["price_1g"] == 4321
        assert seen[path]["Gelato 41"]["price_20g"] is None
    for path in (CONTEXT, CONTEXT_CONCENTRATES):
        (line,) = shows(seen, path, "Gelato 41")
        assert "1g 4321 THB" in line
        assert "20g" not in line


async def test_availability_hides_and_shows_an_item_on_the_next_read(
    client: httpx.AsyncClient,
) -> None:
    gelato = await an_item(client)
    path = f"/api/menu/items/{gelato['id']}"
    await warm_and_check_cached(client)
    response = await client.patch(path, json={"available": False}, headers=ADMIN)
    assert response.status_code == 200, response.text
    seen = await read_all(client)
    for read in CACHED_READS:
        assert not shows(seen, read, "Gelato 41"), read
    stored = await client.get(path, headers=ADMIN)  # the admin still reads it
    assert stored.status_code == 200
    assert stored.json()["available"] is False

    await warm_and_check_cached(client)
    assert (await client.patch(path, json={"available": True}, headers=ADMIN)).status_code == 200
    seen = await read_all(client)
    for read in CACHED_READS:
        assert shows(seen, read, "Gelato 41"), read


async def test_a_deleted_item_is_gone_from_every_cached_read_next(
    client: httpx.AsyncClient,
) -> None:
    gelato = await an_item(client)
    await warm_and_check_cached(client)
    response = await client.delete(f"/api/menu/items/{gelato['id']}", headers=ADMIN)
    assert response.status_code == 204
    assert response.content == b""
    seen = await read_all(client)
    for read in CACHED_READS:
        assert not shows(seen, read, "Gelato 41"), read
    gone = await client.get(f"/api/menu/items/{gelato['id']}", headers=ADMIN)
    assert_error(gone, 404, "not_found")


async def test_admin_reads_one_item(client: httpx.AsyncClient) -> None:
    gelato = await an_item(client)
    response = await client.get(f"/api/menu/items/{gelato['id']}", headers=ADMIN)
    assert response.status_code == 200
    assert response.json() == gelato


async def test_admin_lists_every_item_unavailable_and_concentrates_included(
    client: httpx.AsyncClient,
) -> None:
    gelato = await an_item(client)
    await client.patch(f"/api/menu/items/{gelato['id']}", json={"available": False}, headers=ADMIN)
    response = await client.get("/api/menu/items", headers=ADMIN)
    assert response.status_code == 200
    items = response.json()
    public = (await client.get("/api/menu?concentrates=true")).json()["items"]
    assert {item["id"] for item in public} | {gelato["id"]} <= {item["id"] for item in items}
    assert all(item["available"] for item in public)
    assert {**gelato, "available": False, "updated_at": ANY} in items
    assert any(item["is_concentrate"] for item in items)


def item_routes(item_id: int) -> list[tuple[str, str, dict[str, Any] | None]]:
    """Every admin route of the menu, with a body it would accept."""
    path = f"/api/menu/items/{item_id}"
    return [
        ("GET", "/api/menu/items", None),
        ("GET", path, None),
        ("POST", "/api/menu/items", {"name": "Anyone's", "category": "PREMIUM"}),
        ("PATCH", path, {"price_1g": 1}),
        ("DELETE", path, None),
    ]


async def test_the_item_routes_need_the_admin_token(
    client: httpx.AsyncClient, alice: dict[str, str]
) -> None:
    gelato = await an_item(client)
    for method, path, body in item_routes(gelato["id"]):
        refused = await client.request(method, path, json=body, headers=alice)
        assert_error(refused, 403, "forbidden")
        anonymous = await client.request(method, path, json=body)
        assert_error(anonymous, 401, "unauthorized")
        assert anonymous.headers["WWW-Authenticate"] == "Bearer"
    assert await an_item(client) == gelato  # nothing was written
    assert "Anyone's" not in (await read_all(client))[CONCENTRATES]


@one_stack
async def test_without_a_configured_admin_token_item_routes_are_disabled(
    no_admin_client: httpx.AsyncClient,
) -> None:
    for method, path, body in item_routes(1):
        response = await no_admin_client.request(method, path, json=body, headers=ADMIN)
        assert_error(response, 403, "admin_disabled")


async def test_unknown_items_are_404(client: httpx.AsyncClient) -> None:
    for method, body in (("GET", None), ("PATCH", {"price_1g": 1}), ("DELETE", None)):
        response = await client.request(
            method, f"/api/menu/items/{2**31 - 1}", json=body, headers=ADMIN
        )
        error = assert_error(response, 404, "not_found")
        assert str(2**31 - 1) in error["message"]


async def test_a_duplicate_name_is_409_and_changes_nothing(client: httpx.AsyncClient) -> None:
    await warm_and_check_cached(client)
    before = await read_all(client)
    body = {"name": "Gelato 41", "category": "HASH", "price_1g": 1}
    error = assert_error(await client.post("/api/menu/items", json=body, headers=ADMIN), 409)
    assert error["code"] == "conflict"
    assert "Gelato 41" in error["message"]
    assert await read_all(client) == before


@one_stack
@pytest.mark.parametrize("item_id", ["0", "-1", str(2**31), "abc", "1.5"])
async def test_an_item_id_that_cannot_exist_is_422(client: httpx.AsyncClient, item_id: str) -> None:
    for method, body in (("GET", None), ("PATCH", {"price_1g": 1}), ("DELETE", None)):
        response = await client.request(
            method, f"/api/menu/items/{item_id}", json=body, headers=ADMIN
        )
        error = assert_error(response, 422, "validation_error")
        assert "item_id" in error["message"]


@one_stack
@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"name": ""}, "name"),
        ({"name": "   "}, "name"),
        ({"name": "x" * 121}, "name"),
        ({"name": "Line\nbreak"}, "name"),
        ({"name": "Line\u2028separator"}, "name"),
        ({"category": "Next\x85line"}, "category"),
        ({"category": ""}, "category"),
        ({"category": "c" * 61}, "category"),
        ({"type": "ruderalis"}, "type"),
        ({"price_1g": -1}, "price_1g"),
        ({"price_5g": 1.5}, "price_5g"),
        ({"price_20g": 10_000_001}, "price_20g"),
        ({"thc": 100.5}, "thc"),
        ({"cbd": -0.1}, "cbd"),
        ({"cbg": "lots"}, "cbg"),
        ({"sort_order": 2**31}, "sort_order"),
        ({"description": "d" * 1001}, "description"),
        ({"available": "sometimes"}, "available"),
        ({"colour": "green"}, "colour"),
    ],
)
async def test_invalid_item_fields_are_422_naming_the_field(
    client: httpx.AsyncClient, change: dict[str, Any], field: str
) -> None:
    gelato = await an_item(client)
    create = {"name": "Valid Name", "category": "PREMIUM", **change}
    writes = [("POST", "/api/menu/items", create)]
    if "name" not in change:  # a name is set on creation only
        writes.append(("PATCH", f"/api/menu/items/{gelato['id']}", change))
    for method, path, body in writes:
        response = await client.request(method, path, json=body, headers=ADMIN)
        error = assert_error(response, 422, "validation_error")
        assert field in error["message"], (method, error)
    assert await an_item(client) == gelato


@one_stack
async def test_a_create_without_name_or_category_is_422(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/menu/items", json={"price_1g": 1}, headers=ADMIN)
    error = assert_error(response, 422, "validation_error")
    assert "name" in error["message"]
    assert "category" in error["message"]


@pytest.mark.parametrize("field", ["category", "available", "sort_order"])
async def test_null_for_a_required_field_is_400_naming_it(
    client: httpx.AsyncClient, field: str
) -> None:
    gelato = await an_item(client)
    response = await client.patch(
        f"/api/menu/items/{gelato['id']}", json={field: None}, headers=ADMIN
    )
    error = assert_error(response, 400, "invalid_input")
    assert f"{field} cannot be null" in error["message"]
    assert await an_item(client) == gelato


async def test_names_and_categories_are_stored_trimmed(client: httpx.AsyncClient) -> None:
    body = {"name": "  Lemon Cherry  ", "category": " PREMIUM "}
    response = await client.post("/api/menu/items", json=body, headers=ADMIN)
    assert response.status_code == 201, response.text
    assert (response.json()["name"], response.json()["category"]) == ("Lemon Cherry", "PREMIUM")


@one_stack
async def test_the_item_routes_are_documented_with_summaries(client: httpx.AsyncClient) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    operations = {
        ("get", "/api/menu/items/{item_id}"): "Get one menu item",
        ("post", "/api/menu/items"): "Add a menu item",
        ("patch", "/api/menu/items/{item_id}"): "Change a menu item",
        ("delete", "/api/menu/items/{item_id}"): "Delete a menu item",
    }
    for (method, path), summary in operations.items():
        operation = paths[path][method]
        assert operation["summary"] == summary
        assert operation["security"]

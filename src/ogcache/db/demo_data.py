"""Demo seed data for OG Lab, the AI shop assistant of a cannabis dispensary on Koh Samui.

Plain data only (no database imports, no I/O): the seed command loads these menu items,
users, conversations and analytics events into a fresh database so the web app, the
Telegram bot and the admin dashboard have something realistic to show. Prices are in THB.
"""

from typing import Final, TypedDict

__all__ = [
    "DEMO_CONVERSATIONS",
    "DEMO_EVENTS",
    "DEMO_USERS",
    "MENU_ITEMS",
    "ConversationSeed",
    "EventSeed",
    "MenuItemSeed",
    "MessageSeed",
    "UserSeed",
]


class MenuItemSeed(TypedDict):
    """One row of the shop menu."""

    name: str
    category: str
    type: str | None
    thc: float | None
    cbg: float | None
    cbd: float | None
    price_1pc: int | None
    price_1g: int | None
    price_5g: int | None
    price_20g: int | None
    is_concentrate: bool
    our: bool
    available: bool
    description: str
    sort_order: int


class UserSeed(TypedDict):
    """A demo customer (web or Telegram)."""

    user_id: str
    telegram_user_id: int | None
    telegram_username: str | None
    preferences: dict[str, object]
    loyalty_points: int
    total_orders: int
    total_spent: float
    is_blocked: bool


class MessageSeed(TypedDict):
    """One chat message."""

    role: str
    content: str


class ConversationSeed(TypedDict):
    """A chat between a demo user and the assistant."""

    user_id: str
    channel: str
    language: str
    messages: list[MessageSeed]


class EventSeed(TypedDict):
    """An analytics event; ``days_ago`` is turned into a timestamp by the seed command."""

    event_type: str
    event_data: dict[str, object]
    user_id: str | None
    days_ago: int


MENU_ITEMS: Final[tuple[MenuItemSeed, ...]] = (
    # --- TOP SHELF -------------------------------------------------------------------------
    {
        "name": "Gelato 41",
        "category": "TOP SHELF",
        "type": "hybrid",
        "thc": 27.5,
        "cbg": 1.2,
        "cbd": None,
        "price_1pc": None,
        "price_1g": 1100,
        "price_5g": 5000,
        "price_20g": 18000,
        "is_concentrate": False,
        "our": False,
        "available": True,
        "description": "Creamy sherbet and citrus notes with a calm, euphoric body high.",
        "sort_order": 10,
    },
    {
        "name": "Northern Lights",
        "category": "TOP SHELF",
        "type": "indica",
        "thc": 24.0,
        "cbg": None,
        "cbd": 0.1,
        "price_1pc": None,
        "price_1g": 950,
        "price_5g": 4300,
        "price_20g": 15500,
        "is_concentrate": False,
        "our": True,
        "available": True,
        "description": "Sweet pine and earth, deeply relaxing and great for sleep.",
        "sort_order": 20,
    },
    {
        "name": "Runtz",
        "category": "TOP SHELF",
        "type": "hybrid",
        "thc": 28.0,
        "cbg": 0.8,
        "cbd": None,
        "price_1pc": None,
        "price_1g": 1200,
        "price_5g": 5500,
        "price_20g": 20000,
        "is_concentrate": False,
        "our": False,
        "available": True,
        "description": "Candy-sweet fruit flavour with a giggly, uplifting buzz.",
        "sort_order": 30,
    },
    {
        "name": "Wedding Cake",
        "category": "TOP SHELF",
        "type": "indica",
        "thc": 26.5,
        "cbg": 1.0,
        "cbd": None,
        "price_1pc": None,
        "price_1g": 1000,
        "price_5g": 4500,
        "price_20g": 16000,
        "is_concentrate": False,
        "our": True,
        "available": True,
        "description": "Vanilla and pepper notes, heavy and soothing for the evening.",
        "sort_order": 40,
    },
    {
        "name": "Sour Diesel",
        "category": "TOP SHELF",
        "type": "sativa",
        "thc": 25.0,
        "cbg": None,
        "cbd": None,
        "price_1pc": None,
        "price_1g": 950,
        "price_5g": 4300,
        "price_20g": 15500,
        "is_concentrate": False,
        "our": False,
        "available": True,
        "description": "Pungent fuel aroma with a fast, energetic and focused head high.",
        "sort_order": 50,
    },
    {
        "name": "Zkittlez",
        "category": "TOP SHELF",
        "type": "indica",
        "thc": 23.5,
        "cbg": 0.6,
        "cbd": None,
        "price_1pc": None,
        "price_1g": 900,
        "price_5g": 4000,
        "price_20g": 14500,
        "is_concentrate": False,
        "our": False,
        "available": False,
        "description": "Tropical fruit candy taste, mellow and happy.",
        "sort_order": 60,
    },
    # --- MID SHELF -------------------------------------------------------------------------
    {
        "name": "OG Kush",
        "category": "MID SHELF",
        "type": "hybrid",
        "thc": 19.5,
        "cbg": None,
        "cbd": None,
        "price_1pc": None,
        "price_1g": 500,
        "price_5g": 2300,
        "price_20g": 8500,
        "is_concentrate": False,
        "our": True,
        "available": True,
        "description": "Classic lemon-pine and earth, balanced and stress-relieving.",
        "sort_order": 70,
    },
    {
        "name": "Amnesia Haze",
        "category": "MID SHELF",
        "type": "sativa",
        "thc": 18.5,
        "cbg": None,
        "cbd": None,
        "price_1pc": None,
        "price_1g": 450,
        "price_5g": 2000,
        "price_20g": 7500,
        "is_concentrate": False,
        "our": False,
        "available": True,
        "description": "Citrus and spice with a bright, creative daytime lift.",
        "sort_order": 80,
    },
    {
        "name": "White Widow",
        "category": "MID SHELF",
        "type": "hybrid",
        "thc": 18.0,
        "cbg": None,
        "cbd": None,
        "price_1pc": None,
        "price_1g": 400,
        "price_5g": 1800,
        "price_20g": 6500,
        "is_concentrate": False,
        "our": True,
        "available": True,
        "description": "Earthy and woody, a sociable and chatty all-rounder.",
        "sort_order": 90,
    },
    {
        "name": "Super Lemon Haze",
        "category": "MID SHELF",
        "type": "sativa",
        "thc": 19.0,
        "cbg": None,
        "cbd": None,
        "price_1pc": None,
        "price_1g": 450,
        "price_5g": 2000,
        "price_20g": 7500,
        "is_concentrate": False,
        "our": False,
        "available": True,
        "description": "Zesty lemon peel flavour, energising for beach days.",
        "sort_order": 100,
    },
    {
        "name": "Granddaddy Purple",
        "category": "MID SHELF",
        "type": "indica",
        "thc": 17.5,
        "cbg": None,
        "cbd": None,
        "price_1pc": None,
        "price_1g": 400,
        "price_5g": 1800,
        "price_20g": 6500,
        "is_concentrate": False,
        "our": False,
        "available": True,
        "description": "Grape and berry sweetness with a sleepy, body-melting finish.",
        "sort_order": 110,
    },
    {
        "name": "Durban Poison",
        "category": "MID SHELF",
        "type": "sativa",
        "thc": 17.0,
        "cbg": 0.5,
        "cbd": None,
        "price_1pc": None,
        "price_1g": 350,
        "price_5g": 1600,
        "price_20g": 5800,
        "is_concentrate": False,
        "our": False,
        "available": False,
        "description": "Sweet anise aroma, clear-headed and motivating.",
        "sort_order": 120,
    },
    {
        "name": "Bubba Kush",
        "category": "MID SHELF",
        "type": "indica",
        "thc": 16.5,
        "cbg": None,
        "cbd": None,
        "price_1pc": None,
        "price_1g": 300,
        "price_5g": 1350,
        "price_20g": 5000,
        "is_concentrate": False,
        "our": True,
        "available": True,
        "description": "Chocolate and coffee notes, tranquil and easy-going.",
        "sort_order": 130,
    },
    {
        "name": "Harlequin",
        "category": "MID SHELF",
        "type": "sativa",
        "thc": 8.0,
        "cbg": None,
        "cbd": 12.0,
        "price_1pc": None,
        "price_1g": 250,
        "price_5g": 1100,
        "price_20g": 4000,
        "is_concentrate": False,
        "our": False,
        "available": True,
        "description": "High-CBD mango and earth, gentle and clear, ideal for beginners.",
        "sort_order": 140,
    },
    # --- PREMIUM ---------------------------------------------------------------------------
    {
        "name": "Blue Dream",
        "category": "PREMIUM",
        "type": "hybrid",
        "thc": 21.0,
        "cbg": None,
        "cbd": 0.2,
        "price_1pc": None,
        "price_1g": 750,
        "price_5g": 3400,
        "price_20g": 12500,
        "is_concentrate": False,
        "our": True,
        "available": True,
        "description": "Blueberry sweetness with a smooth, creative and relaxed high.",
        "sort_order": 150,
    },
    {
        "name": "Girl Scout Cookies",
        "category": "PREMIUM",
        "type": "hybrid",
        "thc": 22.5,
        "cbg": 0.9,
        "cbd": None,
        "price_1pc": None,
        "price_1g": 800,
        "price_5g": 3600,
        "price_20g": 13000,
        "is_concentrate": False,
        "our": False,
        "available": True,
        "description": "Sweet mint and dough flavour, euphoric and full-bodied.",
        "sort_order": 160,
    },
    {
        "name": "Jack Herer",
        "category": "PREMIUM",
        "type": "sativa",
        "thc": 20.5,
        "cbg": None,
        "cbd": 0.3,
        "price_1pc": None,
        "price_1g": 700,
        "price_5g": 3200,
        "price_20g": 12000,
        "is_concentrate": False,
        "our": True,
        "available": True,
        "description": "Spicy pine aroma, clear and blissful for daytime adventures.",
        "sort_order": 170,
    },
    {
        "name": "Purple Punch",
        "category": "PREMIUM",
        "type": "indica",
        "thc": 21.5,
        "cbg": None,
        "cbd": None,
        "price_1pc": None,
        "price_1g": 750,
        "price_5g": 3400,
        "price_20g": 12500,
        "is_concentrate": False,
        "our": False,
        "available": True,
        "description": "Grape candy and blueberry muffin taste, a cosy after-dinner treat.",
        "sort_order": 180,
    },
    {
        "name": "Samui Sunset",
        "category": "PREMIUM",
        "type": "hybrid",
        "thc": 19.0,
        "cbg": 1.5,
        "cbd": None,
        "price_1pc": None,
        "price_1g": 650,
        "price_5g": 3000,
        "price_20g": 11000,
        "is_concentrate": False,
        "our": True,
        "available": True,
        "description": "Our island-grown hybrid with papaya and lime notes, happy and mellow.",
        "sort_order": 190,
    },
    {
        "name": "Lemon Cherry Gelato",
        "category": "PREMIUM",
        "type": "hybrid",
        "thc": 23.0,
        "cbg": 1.1,
        "cbd": None,
        "price_1pc": None,
        "price_1g": 850,
        "price_5g": 3900,
        "price_20g": 14000,
        "is_concentrate": False,
        "our": False,
        "available": True,
        "description": "Sour cherry and lemon cream, uplifting then relaxing.",
        "sort_order": 200,
    },
    # --- HASH ------------------------------------------------------------------------------
    {
        "name": "Bubble Hash",
        "category": "HASH",
        "type": "hybrid",
        "thc": 55.0,
        "cbg": None,
        "cbd": None,
        "price_1pc": None,
        "price_1g": 900,
        "price_5g": 4000,
        "price_20g": None,
        "is_concentrate": True,
        "our": True,
        "available": True,
        "description": "Ice-water extracted from our own flowers, rich and smooth.",
        "sort_order": 210,
    },
    {
        "name": "Moroccan Hash",
        "category": "HASH",
        "type": "indica",
        "thc": 50.0,
        "cbg": None,
        "cbd": 1.0,
        "price_1pc": None,
        "price_1g": 900,
        "price_5g": 4000,
        "price_20g": None,
        "is_concentrate": True,
        "our": False,
        "available": True,
        "description": "Traditional dry-sift with earthy spice, calm and steady.",
        "sort_order": 220,
    },
    {
        "name": "Charas",
        "category": "HASH",
        "type": "indica",
        "thc": 52.0,
        "cbg": None,
        "cbd": None,
        "price_1pc": None,
        "price_1g": 1000,
        "price_5g": 4500,
        "price_20g": None,
        "is_concentrate": True,
        "our": False,
        "available": True,
        "description": "Hand-rubbed resin with a soft, incense-like taste and deep relaxation.",
        "sort_order": 230,
    },
    {
        "name": "Temple Ball",
        "category": "HASH",
        "type": "indica",
        "thc": 58.0,
        "cbg": None,
        "cbd": None,
        "price_1pc": None,
        "price_1g": 1200,
        "price_5g": None,
        "price_20g": None,
        "is_concentrate": True,
        "our": False,
        "available": True,
        "description": "Cured hand-pressed hash, creamy and spicy with a heavy body effect.",
        "sort_order": 240,
    },
    # --- ROSIN -----------------------------------------------------------------------------
    {
        "name": "Live Rosin",
        "category": "ROSIN",
        "type": "hybrid",
        "thc": 72.0,
        "cbg": None,
        "cbd": None,
        "price_1pc": None,
        "price_1g": 2200,
        "price_5g": 10000,
        "price_20g": None,
        "is_concentrate": True,
        "our": True,
        "available": True,
        "description": "Solventless press of fresh-frozen flowers, terpene-rich and clean.",
        "sort_order": 250,
    },
    {
        "name": "Gelato 41 Rosin",
        "category": "ROSIN",
        "type": "hybrid",
        "thc": 74.0,
        "cbg": 2.0,
        "cbd": None,
        "price_1pc": None,
        "price_1g": 2500,
        "price_5g": None,
        "price_20g": None,
        "is_concentrate": True,
        "our": False,
        "available": True,
        "description": "Gelato 41 flavour in concentrated form, sweet and powerful.",
        "sort_order": 260,
    },
    {
        "name": "Flower Rosin",
        "category": "ROSIN",
        "type": "indica",
        "thc": 68.0,
        "cbg": None,
        "cbd": None,
        "price_1pc": None,
        "price_1g": 1800,
        "price_5g": 8000,
        "price_20g": None,
        "is_concentrate": True,
        "our": False,
        "available": False,
        "description": "Heat-pressed cured flower, earthy and relaxing.",
        "sort_order": 270,
    },
    # --- LIVE RESIN ------------------------------------------------------------------------
    {
        "name": "Live Resin Sauce",
        "category": "LIVE RESIN",
        "type": "sativa",
        "thc": 78.0,
        "cbg": None,
        "cbd": None,
        "price_1pc": None,
        "price_1g": 2000,
        "price_5g": 9000,
        "price_20g": None,
        "is_concentrate": True,
        "our": False,
        "available": True,
        "description": "Terpy sauce with citrus diamonds, bright and energising.",
        "sort_order": 280,
    },
    {
        "name": "Wedding Cake Live Resin",
        "category": "LIVE RESIN",
        "type": "indica",
        "thc": 76.0,
        "cbg": None,
        "cbd": None,
        "price_1pc": None,
        "price_1g": 2100,
        "price_5g": None,
        "price_20g": None,
        "is_concentrate": True,
        "our": False,
        "available": True,
        "description": "Vanilla-pepper live resin for a strong, soothing evening.",
        "sort_order": 290,
    },
    {
        "name": "Sour Diesel Badder",
        "category": "LIVE RESIN",
        "type": "sativa",
        "thc": 80.0,
        "cbg": None,
        "cbd": None,
        "price_1pc": None,
        "price_1g": 2300,
        "price_5g": None,
        "price_20g": None,
        "is_concentrate": True,
        "our": False,
        "available": True,
        "description": "Whipped fuel-scented badder with a very fast, energetic kick.",
        "sort_order": 300,
    },
    # --- PRE-ROLLS -------------------------------------------------------------------------
    {
        "name": "Pre-roll Pack",
        "category": "PRE-ROLLS",
        "type": None,
        "thc": None,
        "cbg": None,
        "cbd": None,
        "price_1pc": 1200,
        "price_1g": None,
        "price_5g": None,
        "price_20g": None,
        "is_concentrate": False,
        "our": False,
        "available": True,
        "description": "Five mixed half-gram pre-rolls from our mid shelf, good for sharing.",
        "sort_order": 310,
    },
    {
        "name": "Northern Lights Pre-roll",
        "category": "PRE-ROLLS",
        "type": "indica",
        "thc": 24.0,
        "cbg": None,
        "cbd": 0.1,
        "price_1pc": 350,
        "price_1g": None,
        "price_5g": None,
        "price_20g": None,
        "is_concentrate": False,
        "our": True,
        "available": True,
        "description": "One gram of house Northern Lights, rolled for a relaxing night.",
        "sort_order": 320,
    },
    {
        "name": "Gelato 41 Pre-roll",
        "category": "PRE-ROLLS",
        "type": "hybrid",
        "thc": 27.5,
        "cbg": 1.2,
        "cbd": None,
        "price_1pc": 450,
        "price_1g": None,
        "price_5g": None,
        "price_20g": None,
        "is_concentrate": False,
        "our": False,
        "available": True,
        "description": "One gram of top-shelf Gelato 41, creamy and euphoric.",
        "sort_order": 330,
    },
    {
        "name": "Amnesia Haze Pre-roll",
        "category": "PRE-ROLLS",
        "type": "sativa",
        "thc": 18.5,
        "cbg": None,
        "cbd": None,
        "price_1pc": 250,
        "price_1g": None,
        "price_5g": None,
        "price_20g": None,
        "is_concentrate": False,
        "our": False,
        "available": True,
        "description": "Citrusy sativa pre-roll for a sunset beach walk.",
        "sort_order": 340,
    },
    {
        "name": "Hash Infused Pre-roll",
        "category": "PRE-ROLLS",
        "type": "hybrid",
        "thc": 35.0,
        "cbg": None,
        "cbd": None,
        "price_1pc": 600,
        "price_1g": None,
        "price_5g": None,
        "price_20g": None,
        "is_concentrate": False,
        "our": True,
        "available": True,
        "description": "House flower boosted with Bubble Hash, strong and long-lasting.",
        "sort_order": 350,
    },
    # --- EDIBLES ---------------------------------------------------------------------------
    {
        "name": "Mango Gummies",
        "category": "EDIBLES",
        "type": None,
        "thc": None,
        "cbg": None,
        "cbd": None,
        "price_1pc": 150,
        "price_1g": None,
        "price_5g": None,
        "price_20g": None,
        "is_concentrate": False,
        "our": True,
        "available": True,
        "description": "Ripe mango gummy with 10 mg THC, gentle and happy.",
        "sort_order": 360,
    },
    {
        "name": "Coconut Chocolate Bar",
        "category": "EDIBLES",
        "type": None,
        "thc": None,
        "cbg": None,
        "cbd": None,
        "price_1pc": 350,
        "price_1g": None,
        "price_5g": None,
        "price_20g": None,
        "is_concentrate": False,
        "our": True,
        "available": True,
        "description": "Dark chocolate with toasted Samui coconut, 50 mg THC in 10 squares.",
        "sort_order": 370,
    },
    {
        "name": "Sleepy Berry Gummies",
        "category": "EDIBLES",
        "type": None,
        "thc": None,
        "cbg": None,
        "cbd": None,
        "price_1pc": 180,
        "price_1g": None,
        "price_5g": None,
        "price_20g": None,
        "is_concentrate": False,
        "our": False,
        "available": True,
        "description": "Mixed berry gummy with 5 mg THC and 10 mg CBD for a restful sleep.",
        "sort_order": 380,
    },
    {
        "name": "Thai Tea Cookies",
        "category": "EDIBLES",
        "type": None,
        "thc": None,
        "cbg": None,
        "cbd": None,
        "price_1pc": 200,
        "price_1g": None,
        "price_5g": None,
        "price_20g": None,
        "is_concentrate": False,
        "our": False,
        "available": False,
        "description": "Buttery cookie with Thai milk tea flavour and 10 mg THC.",
        "sort_order": 390,
    },
    {
        "name": "Pineapple Hard Candy",
        "category": "EDIBLES",
        "type": None,
        "thc": None,
        "cbg": None,
        "cbd": None,
        "price_1pc": 100,
        "price_1g": None,
        "price_5g": None,
        "price_20g": None,
        "is_concentrate": False,
        "our": False,
        "available": True,
        "description": "Tangy pineapple candy with 5 mg THC, a light microdose.",
        "sort_order": 400,
    },
)


DEMO_USERS: Final[tuple[UserSeed, ...]] = (
    {
        "user_id": "web_demo_alice",
        "telegram_user_id": None,
        "telegram_username": None,
        "preferences": {
            "favoriteStrains": ["Gelato 41", "Blue Dream"],
            "preferredEffects": ["relaxed", "creative"],
            "preferredTypes": ["hybrid"],
            "experienceLevel": "intermediate",
            "language": "en",
        },
        "loyalty_points": 240,
        "total_orders": 6,
        "total_spent": 7850.0,
        "is_blocked": False,
    },
    {
        "user_id": "tg_100000001",
        "telegram_user_id": 100000001,
        "telegram_username": "dima_samui",
        "preferences": {
            "favoriteStrains": ["Live Rosin", "Charas", "Sour Diesel"],
            "preferredEffects": ["energetic", "focused"],
            "preferredTypes": ["sativa"],
            "experienceLevel": "expert",
            "language": "ru",
        },
        "loyalty_points": 610,
        "total_orders": 14,
        "total_spent": 28400.0,
        "is_blocked": False,
    },
    {
        "user_id": "tg_100000002",
        "telegram_user_id": 100000002,
        "telegram_username": "kai_surfs",
        "preferences": {
            "favoriteStrains": ["Northern Lights"],
            "preferredEffects": ["sleepy", "relaxed"],
            "preferredTypes": ["indica"],
            "experienceLevel": "beginner",
            "language": "en",
        },
        "loyalty_points": 35,
        "total_orders": 1,
        "total_spent": 350.0,
        "is_blocked": False,
    },
    {
        "user_id": "web_demo_niran",
        "telegram_user_id": None,
        "telegram_username": None,
        "preferences": {
            "favoriteStrains": ["Mango Gummies"],
            "preferredEffects": ["happy"],
            "preferredTypes": [],
            "experienceLevel": "beginner",
            "language": "th",
        },
        "loyalty_points": 30,
        "total_orders": 1,
        "total_spent": 300.0,
        "is_blocked": False,
    },
    {
        "user_id": "web_demo_blocked",
        "telegram_user_id": None,
        "telegram_username": None,
        "preferences": {
            "favoriteStrains": [],
            "preferredEffects": [],
            "preferredTypes": [],
            "experienceLevel": "beginner",
            "language": "en",
        },
        "loyalty_points": 0,
        "total_orders": 0,
        "total_spent": 0.0,
        "is_blocked": True,
    },
)


DEMO_CONVERSATIONS: Final[tuple[ConversationSeed, ...]] = (
    {
        "user_id": "web_demo_alice",
        "channel": "web",
        "language": "en",
        "messages": [
            {
                "role": "user",
                "content": "Hi! I love Gelato 41 but it's a bit pricey. Anything similar?",
            },
            {
                "role": "assistant",
                "content": (
                    "Great taste! Try Lemon Cherry Gelato from our PREMIUM shelf: same creamy "
                    "Gelato family with a sour cherry twist, 850 THB per gram. If you want "
                    "something more relaxed, Blue Dream is 750 THB per gram and grown by us."
                ),
            },
            {
                "role": "user",
                "content": "Blue Dream sounds good. How much for 5 grams?",
            },
            {
                "role": "assistant",
                "content": (
                    "5 grams of Blue Dream is 3400 THB, which saves you 350 THB compared to "
                    "buying single grams. Shall I reserve it for pickup today?"
                ),
            },
        ],
    },
    {
        "user_id": "web_demo_alice",
        "channel": "web",
        "language": "en",
        "messages": [
            {
                "role": "user",
                "content": "What's the difference between Live Rosin and Bubble Hash?",
            },
            {
                "role": "assistant",
                "content": (
                    "Both are solventless. Bubble Hash is ice-water hash made from our own "
                    "flowers, about 55% THC for 900 THB per gram. Live Rosin is pressed from "
                    "fresh-frozen flowers, around 72% THC and much more terpene-rich, "
                    "2200 THB per gram."
                ),
            },
            {
                "role": "user",
                "content": "I'm not a heavy user, which one would you pick?",
            },
            {
                "role": "assistant",
                "content": (
                    "Start with Bubble Hash: it is gentler and easy to crumble into a joint. "
                    "If you'd rather not roll, a Hash Infused Pre-roll is 600 THB and ready "
                    "to go."
                ),
            },
        ],
    },
    {
        "user_id": "tg_100000001",
        "channel": "telegram",
        "language": "ru",
        "messages": [
            {
                "role": "user",
                "content": "Привет! Есть что-нибудь бодрящее из концентратов?",
            },
            {
                "role": "assistant",
                "content": (
                    "Привет! Самый бодрящий — Sour Diesel Badder: около 80% THC, 2300 бат "
                    "за грамм. Чуть мягче и выгоднее — Live Resin Sauce с цитрусовыми "
                    "нотами: 2000 бат за грамм или 9000 бат за 5 г."
                ),
            },
            {
                "role": "user",
                "content": "Беру 5 г Live Resin Sauce. Доставка в Чавенг есть?",
            },
            {
                "role": "assistant",
                "content": (
                    "Конечно, по Чавенгу доставляем бесплатно при заказе от 2000 бат. "
                    "Оформляю 5 г Live Resin Sauce за 9000 бат — пришлите, пожалуйста, "
                    "адрес или точку на карте."
                ),
            },
        ],
    },
    {
        "user_id": "tg_100000001",
        "channel": "telegram",
        "language": "ru",
        "messages": [
            {
                "role": "user",
                "content": "Charas ещё в наличии? Сколько стоят 5 грамм?",
            },
            {
                "role": "assistant",
                "content": (
                    "Да, Charas в наличии: 1000 бат за грамм, 5 г — 4500 бат. Мягкий вкус с "
                    "нотами благовоний и глубокое расслабление — отлично для вечера."
                ),
            },
        ],
    },
    {
        "user_id": "tg_100000002",
        "channel": "telegram",
        "language": "en",
        "messages": [
            {
                "role": "user",
                "content": "First time here. I just want something to help me sleep.",
            },
            {
                "role": "assistant",
                "content": (
                    "Welcome! For sleep, Northern Lights is our house indica classic. As a "
                    "beginner, a Northern Lights Pre-roll for 350 THB is the easiest start: "
                    "take a few puffs, not the whole thing."
                ),
            },
            {
                "role": "user",
                "content": "I don't really smoke. Is there an edible?",
            },
            {
                "role": "assistant",
                "content": (
                    "Yes: Sleepy Berry Gummies have 5 mg THC plus 10 mg CBD, 180 THB each. "
                    "Eat one about an hour before bed and wait at least two hours before "
                    "taking more."
                ),
            },
            {
                "role": "user",
                "content": "Cool, I'll take the pre-roll today and try gummies next time.",
            },
            {
                "role": "assistant",
                "content": (
                    "Perfect, one Northern Lights Pre-roll reserved for you. Sleep well and "
                    "enjoy Samui!"
                ),
            },
        ],
    },
    {
        "user_id": "web_demo_niran",
        "channel": "web",
        "language": "th",
        "messages": [
            {
                "role": "user",
                "content": "สวัสดีครับ มีกัมมี่รสมะม่วงไหมครับ",
            },
            {
                "role": "assistant",
                "content": (
                    "สวัสดีค่ะ มี Mango Gummies ค่ะ ราคาชิ้นละ 150 บาท มี THC 10 มก. ต่อชิ้น "
                    "ถ้าเพิ่งเริ่มแนะนำให้ทานครึ่งชิ้นก่อน แล้วรอประมาณหนึ่งชั่วโมงนะคะ"
                ),
            },
            {
                "role": "user",
                "content": "ขอบคุณครับ เอาสองชิ้นครับ",
            },
            {
                "role": "assistant",
                "content": "ได้เลยค่ะ Mango Gummies สองชิ้น รวม 300 บาทค่ะ",
            },
        ],
    },
)


DEMO_EVENTS: Final[tuple[EventSeed, ...]] = (
    # --- today -----------------------------------------------------------------------------
    {
        "event_type": "message_sent",
        "event_data": {"channel": "web", "length": 58},
        "user_id": "web_demo_alice",
        "days_ago": 0,
    },
    {
        "event_type": "product_mentioned",
        "event_data": {"product": "Gelato 41"},
        "user_id": "web_demo_alice",
        "days_ago": 0,
    },
    {
        "event_type": "product_mentioned",
        "event_data": {"product": "Lemon Cherry Gelato"},
        "user_id": "web_demo_alice",
        "days_ago": 0,
    },
    {
        "event_type": "product_mentioned",
        "event_data": {"product": "Blue Dream"},
        "user_id": "web_demo_alice",
        "days_ago": 0,
    },
    {
        "event_type": "order_created",
        "event_data": {"product": "Blue Dream", "amount": 3400},
        "user_id": "web_demo_alice",
        "days_ago": 0,
    },
    {
        "event_type": "message_sent",
        "event_data": {"channel": "telegram", "length": 31},
        "user_id": "tg_100000002",
        "days_ago": 0,
    },
    {
        "event_type": "product_mentioned",
        "event_data": {"product": "Northern Lights Pre-roll"},
        "user_id": "tg_100000002",
        "days_ago": 0,
    },
    {
        "event_type": "order_created",
        "event_data": {"product": "Northern Lights Pre-roll", "amount": 350},
        "user_id": "tg_100000002",
        "days_ago": 0,
    },
    {
        "event_type": "message_sent",
        "event_data": {"channel": "web", "length": 22},
        "user_id": None,
        "days_ago": 0,
    },
    {
        "event_type": "product_mentioned",
        "event_data": {"product": "Runtz"},
        "user_id": None,
        "days_ago": 0,
    },
    # --- earlier ---------------------------------------------------------------------------
    {
        "event_type": "message_sent",
        "event_data": {"channel": "telegram", "length": 47},
        "user_id": "tg_100000001",
        "days_ago": 1,
    },
    {
        "event_type": "product_mentioned",
        "event_data": {"product": "Sour Diesel Badder"},
        "user_id": "tg_100000001",
        "days_ago": 1,
    },
    {
        "event_type": "product_mentioned",
        "event_data": {"product": "Live Resin Sauce"},
        "user_id": "tg_100000001",
        "days_ago": 1,
    },
    {
        "event_type": "order_created",
        "event_data": {"product": "Live Resin Sauce", "amount": 9000},
        "user_id": "tg_100000001",
        "days_ago": 1,
    },
    {
        "event_type": "language_switched",
        "event_data": {"from": "en", "to": "th"},
        "user_id": "web_demo_niran",
        "days_ago": 2,
    },
    {
        "event_type": "message_sent",
        "event_data": {"channel": "web", "length": 34},
        "user_id": "web_demo_niran",
        "days_ago": 2,
    },
    {
        "event_type": "product_mentioned",
        "event_data": {"product": "Mango Gummies"},
        "user_id": "web_demo_niran",
        "days_ago": 2,
    },
    {
        "event_type": "order_created",
        "event_data": {"product": "Mango Gummies", "amount": 300},
        "user_id": "web_demo_niran",
        "days_ago": 2,
    },
    {
        "event_type": "message_sent",
        "event_data": {"channel": "web", "length": 61},
        "user_id": "web_demo_alice",
        "days_ago": 3,
    },
    {
        "event_type": "product_mentioned",
        "event_data": {"product": "Live Rosin"},
        "user_id": "web_demo_alice",
        "days_ago": 3,
    },
    {
        "event_type": "product_mentioned",
        "event_data": {"product": "Bubble Hash"},
        "user_id": "web_demo_alice",
        "days_ago": 3,
    },
    {
        "event_type": "product_mentioned",
        "event_data": {"product": "Hash Infused Pre-roll"},
        "user_id": "web_demo_alice",
        "days_ago": 3,
    },
    {
        "event_type": "language_switched",
        "event_data": {"from": "en", "to": "ru"},
        "user_id": "tg_100000001",
        "days_ago": 5,
    },
    {
        "event_type": "message_sent",
        "event_data": {"channel": "telegram", "length": 44},
        "user_id": "tg_100000001",
        "days_ago": 5,
    },
    {
        "event_type": "product_mentioned",
        "event_data": {"product": "Charas"},
        "user_id": "tg_100000001",
        "days_ago": 5,
    },
    {
        "event_type": "order_created",
        "event_data": {"product": "Charas", "amount": 4500},
        "user_id": "tg_100000001",
        "days_ago": 5,
    },
    {
        "event_type": "message_sent",
        "event_data": {"channel": "web", "length": 19},
        "user_id": None,
        "days_ago": 7,
    },
    {
        "event_type": "product_mentioned",
        "event_data": {"product": "Wedding Cake"},
        "user_id": None,
        "days_ago": 7,
    },
    {
        "event_type": "order_created",
        "event_data": {"product": "Gelato 41", "amount": 1100},
        "user_id": "web_demo_alice",
        "days_ago": 9,
    },
    {
        "event_type": "product_mentioned",
        "event_data": {"product": "Super Lemon Haze"},
        "user_id": None,
        "days_ago": 10,
    },
)

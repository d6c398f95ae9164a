from __future__ import annotations

import httpx


def test_products_page(api: httpx.Client) -> None:
    response = api.get("/dynamic-entity/products", params={"page[limit]": "3"})
    assert response.status_code == 200
    data = response.json()["data"]
    assert [p["idProduct"] for p in data] == [1, 2, 3]
    assert data[0]["price"] == "563.80"
    assert data[0]["isActive"] is False

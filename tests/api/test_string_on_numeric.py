"""A string field on a NUMERIC column (codes kept as numbers): what the API accepts, it answers."""

from __future__ import annotations

import httpx
import sqlalchemy as sa

from tests.conftest import Backend, config_field, serving

META = sa.MetaData()
sa.Table(
    "sn_code",
    META,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("code", sa.Numeric(12, 2), nullable=True),
)
CONFIG = [
    {
        "tableName": "sn_code",
        "tableAlias": "sn-codes",
        "isActive": True,
        "definition": {
            "identifier": "id",
            "fields": [config_field("id", "integer", isCreatable=False, isEditable=False), config_field("code")],
        },
    }
]


def test_a_code_written_as_text_reads_back_as_text(backend: Backend, api: httpx.Client) -> None:
    with serving(backend, META, CONFIG):
        response = api.post("/dynamic-entity/sn-codes", json={"data": [{"code": "12.50"}]})
        assert response.status_code == 201, response.text
        [created] = response.json()["data"]
        assert created["code"] == "12.50"
        assert api.get(f"/dynamic-entity/sn-codes/{created['id']}").json()["data"]["code"] == "12.50"
        backend.sql("INSERT INTO sn_code (code) VALUES (7)")
        listed = api.get("/dynamic-entity/sn-codes", params={"sort": "id"}).json()["data"]
        assert [item["code"] for item in listed] == ["12.50", "7.00"]

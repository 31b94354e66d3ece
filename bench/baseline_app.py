"""The ingest baseline: a bare FastAPI endpoint that validates a body and does one XADD."""

from __future__ import annotations

import os

import redis.asyncio as aioredis
from fastapi import FastAPI
from pydantic import BaseModel

app = FastAPI()
client = aioredis.Redis.from_url(os.environ["ASKDOC_REDIS_URL"])


class Body(BaseModel):
    title: str
    body: str
    topics: list[str]


@app.post("/questions", status_code=201)
async def post(body: Body) -> dict[str, str]:
    entry = await client.xadd("bench.baseline", {"__data__": body.model_dump_json()})
    return {"id": entry.decode()}

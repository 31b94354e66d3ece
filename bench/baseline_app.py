"""The bare FastAPI baselines: each endpoint does the least its askdoc counterpart must.

- POST /questions validates a body and makes one XADD (ingest);
- GET /pages/{id} returns one prebuilt JSON value read from Redis (the question page);
- PUT /answers/{id}/vote validates a body and makes one EVALSHA of the votes service's
  own cast_vote.lua (the vote), with a fixed event template.
"""

from __future__ import annotations

import json
import os
from typing import Literal

import redis.asyncio as aioredis
from fastapi import FastAPI, Response
from pydantic import BaseModel

from shared import streams
from shared.lua import script

app = FastAPI()
client = aioredis.Redis.from_url(os.environ["ASKDOC_REDIS_URL"])
cast = client.register_script(script("services.votes", "cast_vote.lua"))

#: Where the bench puts the prebuilt page (bytes of the questions service's own page JSON).
PAGE_KEY = "bench:page:{id}"

_EVENT = json.dumps(
    {
        "event_id": "e",
        "correlation_id": "c",
        "producer": "bench",
        "answer_id": "a",
        "question_id": "q",
        "voter_id": "v",
        "value": 1,
        "previous_value": 0,
        "helpful": 0,
        "unhelpful": 0,
        "tally_version": 0,
    }
)


class Body(BaseModel):
    title: str
    body: str
    topics: list[str]


class VoteBody(BaseModel):
    value: Literal[1, 0, -1]


@app.post("/questions", status_code=201)
async def post(body: Body) -> dict[str, str]:
    entry = await client.xadd("bench.baseline", {"__data__": body.model_dump_json()})
    return {"id": entry.decode()}


@app.get("/pages/{page_id}")
async def page(page_id: str) -> Response:
    return Response(await client.get(PAGE_KEY.format(id=page_id)), media_type="application/json")


@app.put("/answers/{answer_id}/vote")
async def vote(answer_id: str, body: VoteBody) -> dict[str, int]:
    reply = await cast(
        keys=[
            f"bench:votes:{answer_id}",
            f"bench:tally:{answer_id}",
            f"bench.{streams.VOTE_CAST}",
            f"bench:answer:{answer_id}:moderation",  # never hidden: the script reads, passes
            "bench:q:q:moderation",
        ],
        args=["bench-voter", body.value, _EVENT],
    )
    return {"helpful": int(reply[1]), "unhelpful": int(reply[2])}

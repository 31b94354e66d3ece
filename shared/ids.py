"""The one pattern of resource ids in URL paths, so no ':', '{', '}' or space reaches a key.

Ids the services issue are lower-case hex with a letter in front (`q…`, `a…`, `n…`);
doctor ids are the directory ids an admin or import chooses and a doctor's token `sub`
carries (`dr-jon-a-perlman`, an identity provider's `auth0|5f…`, `jane.doe@clinic`), so
the pattern admits letters, digits and `.`, `_`, `@`, `|`, `-` and nothing else.
"""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import Path

#: A resource id: 1-64 of [A-Za-z0-9._@|-], starting with a letter or digit.
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._@|-]{0,63}$"

_ID = re.compile(ID_PATTERN)


def is_resource_id(text: str) -> bool:
    """Whether `text` may be a resource id (and so part of a Redis key name)."""
    return _ID.match(text) is not None


#: A path parameter holding a resource id; anything else is a 422 before any route runs.
ResourceId = Annotated[
    str,
    Path(
        min_length=1,
        max_length=64,
        pattern=ID_PATTERN,
        description="A resource id: letters, digits and . _ @ | - (at most 64)",
        examples=["dr-jon-a-perlman"],
    ),
]

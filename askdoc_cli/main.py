"""The `askdoc` command: tokens, lag, event tailing, dead letters, doctor import, dev stack.

Exit codes: 0 ok, 1 failure (including a check that found a problem), 2 usage error.
Settings come from ASKDOC_* variables like the services'; `--redis-url` overrides.
Tables are Rich on a terminal and tab-separated when piped; `--json` where offered.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from enum StrEnum

"""`routeyard serve` whose limit scripts count nothing: what the Redis round trip alone costs.

    python bench/serve_floor.py serve --config ...   (as `python -m routeyard`)

bench/gateway_limits.py runs it as its `keys-floor` target. Everything of keys-on happens (the
key resolved, the prompt's tokens counted, one round trip per admission with the settlements
in it, each script decoding its argument and reading Redis's clock), except the counting: the
admission script answers "admitted" with zero spend, the settlement script returns at once.
The difference between it and `keys-off` is the floor that any design with one Redis round
trip on a request's path pays on this machine.
"""

from __future__ import annotations

import sys

import routeyard.gateway.redis_counters as counters
import routeyard.gateway.redis_scripts as scripts
from routeyard.gateway.scripts import Script

ADMIT_NOTHING = Script.of(scripts._COMMON + """
local out = {}
for i, a in ipairs(batch[2]) do
  local budgets = 0
  for _, sc in ipairs(a[3]) do budgets = budgets + #sc[8] end
  out[i] = 'ok|' .. now .. string.rep('|0', budgets)
end
return table.concat(out, '\\n')
""")
SETTLE_NOTHING = Script.of(scripts._COMMON + "return 0")


def main() -> int:
    counters.ADMIT, counters.SETTLE = ADMIT_NOTHING, SETTLE_NOTHING
    from routeyard.cli import main as routeyard_main

    return routeyard_main(sys.argv[1:])


if __name__ == "__main__":
    raise SystemExit(main())

"""The two Lua scripts that count limits and spend in Redis: one admits a batch of requests,
one settles a batch. Each runs atomically, so no two replicas can interleave a check and its
count.

Keys, under `{state.key_prefix}:gw:{scope}` (scope = key:<id>, tenant:<id> or static:<hash>):

    :log          ZSET  the sliding 60 s window, member → time (ms): "ticket|n" a request
                        admitted with n prompt tokens, "ticket|p|±n" the correction of its
                        prompt's count (at the admission's time), "ticket|c|n" its answer's
                        tokens (when it ended)
    :par          ZSET  "ticket|reserved $" → lease end (ms): requests in flight
    :sums         HASH  req, tpm: the requests and tokens in :log; res: the dollars requests
                        in flight reserve against hard budgets; par: the members of :par;
                        pe: the earliest lease end in :par (or later: its request may have
                        been settled); xp: when the scope's expiries were last set (ms)
    :spend:{pid}  float dollars spent in a period (2025-01-31, 2025-01, total)

Time is Redis's own (TIME), so replicas with skewed clocks agree on the windows. Within one run
each scope is read once (its sums, its log trimmed, its slots counted, its spend fetched) into
`S`, and written back once at the end: a batch of many requests of one key costs little more
than one. The counters of a scope idle for a lease and a window expire. Each Lua call into Redis
costs a few µs and an admission is on every request's path, so the scripts make as few as they
can: in-flight requests are counted in :sums rather than with ZCARD, ended leases (a dead
replica's) are looked for only once the earliest lease end has passed, and expiries are set
when a key is new or every 10 s, not on every call. The layout needs one Redis server (a
primary with replicas is fine), not Redis Cluster. Each batch comes as one JSON argument
(decoded by cjson).
"""

from __future__ import annotations

from routeyard.gateway.scripts import Script

_COMMON = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local WINDOW = 60000
local batch = cjson.decode(ARGV[1])
local LIVE = batch[1] + WINDOW  -- idle counters are kept a lease and a window
local REFRESH_MS = 10000  -- how often an active scope's expiries are set again
local NEVER = 1e15  -- a lease end no request has (ms; far beyond any TIME)
local S = {}

-- The number at the end of a member: tokens (:log) or dollars reserved (:par).
local function amount(member) return tonumber(string.match(member, '|([^|]+)$')) end
"""

# ARGV[1]: [longest lease ms, [[ticket, lease ms, [[base, rpm, tpm, par, tokens, reserved,
#   slot or false, [[period id, limit, hard], ...]], ...]], ...]] (`slot`: the request's :par
#   member when it holds one). One reply line per admission: "ok|now ms|spent|spent..." (every
#   budget of every scope, in order), or "<rpm|tpm|parallel|budget>|scope number|retry after
#   ms|detail...".
ADMIT = Script.of(_COMMON + """
local function scope(b)
  local st = S[b]
  if st then return st end
  local sums = redis.call('HMGET', b .. ':sums', 'req', 'tpm', 'res', 'par', 'pe', 'xp')
  st = {req = tonumber(sums[1] or '0'), tpm = tonumber(sums[2] or '0'),
        res = tonumber(sums[3] or '0'), par = sums[4] and tonumber(sums[4]) or nil,
        pe = tonumber(sums[5] or '0'), xp = tonumber(sums[6] or '0'), spent = {}}
  S[b] = st
  return st
end

local function trim_log(b, st)  -- entries older than the window leave it
  if st.trimmed then return end
  st.trimmed = true
  local old = redis.call('ZRANGEBYSCORE', b .. ':log', '-inf', now - WINDOW)
  if #old == 0 then return end
  for _, member in ipairs(old) do
    if not string.find(member, '|[pc]|') then st.req = st.req - 1 end
    st.tpm = st.tpm - amount(member)
  end
  redis.call('ZREMRANGEBYSCORE', b .. ':log', '-inf', now - WINDOW)
  st.req, st.tpm, st.changed = math.max(0, st.req), math.max(0, st.tpm), true
end

local function in_flight(b, st)
  -- Slots whose lease ended (their replica died) are freed first: looked for once the
  -- earliest lease end (pe) has passed. :sums written before it counted slots (par) are
  -- counted once.
  if not st.swept and (st.par == nil or now >= st.pe) then
    local gone = redis.call('ZRANGEBYSCORE', b .. ':par', '-inf', now)
    if #gone > 0 then
      for _, member in ipairs(gone) do st.res = st.res - amount(member) end
      redis.call('ZREMRANGEBYSCORE', b .. ':par', '-inf', now)
    end
    st.par = redis.call('ZCARD', b .. ':par')
    local first = redis.call('ZRANGE', b .. ':par', 0, 0, 'WITHSCORES')
    st.pe, st.changed = first[2] and tonumber(first[2]) or NEVER, true
  end
  st.swept = true
  return st.par
end

-- When the oldest of what blocks a request leaves the window (for retry-after).
local function wait_for(b, wanted)
  local entries = redis.call('ZRANGE', b .. ':log', 0, -1, 'WITHSCORES')
  for i = 1, #entries, 2 do
    if wanted(entries[i]) then return tonumber(entries[i + 1]) + WINDOW - now end
  end
  return WINDOW
end

local function spend(b, st, budgets)
  local keys, missing = {}, {}
  for _, budget in ipairs(budgets) do
    if st.spent[budget[1]] == nil then
      keys[#keys + 1] = b .. ':spend:' .. budget[1]
      missing[#missing + 1] = budget[1]
    end
  end
  if #keys > 0 then
    local found = redis.call('MGET', unpack(keys))
    for i, period in ipairs(missing) do st.spent[period] = found[i] or '0' end
  end
end

local function check(sc, st, n, spends)
  local b, rpm, tpm, par, tokens = sc[1], sc[2], sc[3], sc[4], sc[5]
  if rpm > 0 or tpm > 0 then trim_log(b, st) end
  if rpm > 0 and st.req >= rpm then
    local extra = st.req - rpm  -- the (extra+1)th oldest request must leave first
    return 'rpm|' .. n .. '|' .. wait_for(b, function(member)
      if string.find(member, '|[pc]|') then return false end
      extra = extra - 1
      return extra < 0
    end)
  end
  if tpm > 0 and st.tpm + tokens > tpm then
    local left = st.tpm
    return 'tpm|' .. n .. '|' .. wait_for(b, function(member)
      left = left - amount(member)
      return left + tokens <= tpm
    end) .. '|' .. st.tpm
  end
  if sc[7] and in_flight(b, st) >= par and par > 0 then
    return 'parallel|' .. n .. '|1000'
  end
  local budgets = sc[8]
  if #budgets > 0 then
    spend(b, st, budgets)
    for k, budget in ipairs(budgets) do
      local spent = st.spent[budget[1]]
      if budget[3] and tonumber(spent) + math.max(0, st.res) >= budget[2] - 1e-9 then
        return 'budget|' .. n .. '|0|' .. k .. '|' .. spent
      end
      spends[#spends + 1] = spent
    end
  end
  return nil
end

local function count(sc, st, ticket, lease)
  local b, tokens, reserved, slot = sc[1], sc[5], sc[6], sc[7]
  if sc[2] > 0 or sc[3] > 0 then
    -- An empty window: the log may not exist, and a new key needs its expiry.
    if st.req == 0 and st.tpm == 0 then st.newlog = true end
    redis.call('ZADD', b .. ':log', now, ticket .. '|' .. tokens)
    st.req, st.tpm, st.changed = st.req + 1, st.tpm + tokens, true
  end
  if slot then
    if st.par == 0 then st.newpar = true end
    redis.call('ZADD', b .. ':par', now + lease, slot)
    st.par, st.res, st.changed = st.par + 1, st.res + reserved, true
    st.pe = math.min(st.pe, now + lease)
  end
end

local function admit(a)
  local spends, states = {}, {}
  for n, sc in ipairs(a[3]) do
    states[n] = scope(sc[1])
    local refused = check(sc, states[n], n, spends)
    if refused then return refused end
  end
  for n, sc in ipairs(a[3]) do count(sc, states[n], a[1], a[2]) end
  if #spends == 0 then return 'ok|' .. now end
  return 'ok|' .. now .. '|' .. table.concat(spends, '|')
end

local out = {}
for i, a in ipairs(batch[2]) do out[i] = admit(a) end
for b, st in pairs(S) do
  if st.changed then
    -- Nothing in flight: nothing reserved (and no float drift kept).
    local res = st.par == 0 and 0 or math.max(0, st.res)
    local refresh = now - st.xp >= REFRESH_MS
    local sums = {'req', st.req, 'tpm', st.tpm, 'res', res, 'pe', st.pe}
    if st.par ~= nil then sums[#sums + 1], sums[#sums + 2] = 'par', st.par end
    if refresh then sums[#sums + 1], sums[#sums + 2] = 'xp', now end
    redis.call('HSET', b .. ':sums', unpack(sums))
    if refresh then redis.call('PEXPIRE', b .. ':sums', LIVE) end
    if refresh or st.newlog then redis.call('PEXPIRE', b .. ':log', LIVE) end
    if refresh or st.newpar then redis.call('PEXPIRE', b .. ':par', LIVE) end
  end
end
return table.concat(out, '\\n')
""")

# ARGV[1]: [longest lease ms, [[ticket, [[base, slot or false, reserved, tpm, tokens counted,
#   prompt correction, completion, admitted at ms], ...]], ...], [[spend key, ttl s (0: none),
#   dollars], ...]] (the spend of the whole batch, summed per key).
SETTLE = Script.of(_COMMON + """
for _, s in ipairs(batch[2]) do
  local ticket = s[1]
  for _, sc in ipairs(s[2]) do
    local b = sc[1]
    local st = S[b] or {tpm = 0, res = 0, par = 0}
    S[b] = st
    if sc[2] and redis.call('ZREM', b .. ':par', sc[2]) == 1 then  -- else its lease ended
      st.res, st.par = st.res - sc[3], st.par - 1
    end
    if sc[4] then
      -- The prompt's correction is counted when the prompt was (and leaves the window with
      -- it), the answer's tokens now, when they were spent.
      local tokens, delta, extra, at = sc[5], sc[6], sc[7], sc[8]
      if delta ~= 0 and tokens > 0 and at > now - WINDOW then
        redis.call('ZADD', b .. ':log', at, ticket .. '|p|' .. delta)
        st.tpm = st.tpm + delta
        st.logged = true
      elseif delta > 0 then
        extra = extra + delta
      end
      if extra > 0 then
        redis.call('ZADD', b .. ':log', now, ticket .. '|c|' .. extra)
        st.tpm = st.tpm + extra
        st.logged = true
      end
    end
  end
end
for b, st in pairs(S) do
  if st.tpm ~= 0 or st.res ~= 0 or st.par ~= 0 then
    local sums = redis.call('HMGET', b .. ':sums', 'tpm', 'res', 'par')
    local fresh = not (sums[1] or sums[2] or sums[3])  -- its counters had expired
    local new = {'tpm', tonumber(sums[1] or '0') + st.tpm}
    if not fresh then
      new[3], new[4] = 'res', tonumber(sums[2] or '0') + st.res
      -- Written by an admission that counted slots; else the next one counts them.
      if sums[3] then new[5], new[6] = 'par', math.max(0, tonumber(sums[3]) + st.par) end
    end
    redis.call('HSET', b .. ':sums', unpack(new))
    if fresh then redis.call('PEXPIRE', b .. ':sums', LIVE) end
  end
  -- The log may have emptied (and gone) while the request ran.
  if st.logged then redis.call('PEXPIRE', b .. ':log', LIVE) end
end
for _, spent in ipairs(batch[3]) do
  local total = tonumber(redis.call('INCRBYFLOAT', spent[1], spent[3]))
  if spent[2] > 0 and math.abs(total - spent[3]) < 1e-12 then  -- a new period's key
    redis.call('EXPIRE', spent[1], spent[2])
  end
end
return 0
""")

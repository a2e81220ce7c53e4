//! The Lua scripts of the shared crawl: each runs atomically inside Redis, on Redis's clock,
//! touching only the keys of one crawl (one Redis Cluster slot).

/// Applies a batch of [`super::Op`]s atomically. See the module documentation for the keys.
pub(super) const PUBLISH: &str = r#"
local group = ARGV[1]
local max_pages = tonumber(ARGV[2])
local consumer = ARGV[3]
local acked = 0
local i = 4
local function stream(k) if k == 'p' then return KEYS[1] else return KEYS[2] end end
while i <= #ARGV do
  local op = ARGV[i]
  if op == 'P' or op == 'I' then
    local seen = KEYS[4]
    if op == 'P' then seen = KEYS[3] end
    if redis.call('SADD', seen, ARGV[i + 1]) == 1 then
      local ok = true
      if op == 'P' and max_pages > 0 then
        ok = redis.call('INCR', KEYS[9]) <= max_pages
      end
      if ok then
        local s = KEYS[2]
        if op == 'P' then s = KEYS[1] end
        redis.call('XADD', s, '*', 'j', ARGV[i + 2])
        redis.call('INCR', KEYS[5])
      end
    end
    i = i + 3
  elseif op == 'A' then
    -- kind, id, counter to add 1 to ('' for none), manifest row ('' for none), bytes saved,
    -- SHA-256 of bytes now on this process's disk ('' for none) and where they are
    if ARGV[i + 6] ~= '' then
      -- Registered even when the job was taken over: the file is there either way.
      redis.call('HSETNX', KEYS[10], ARGV[i + 6], ARGV[i + 7])
      local claim = redis.call('HGET', KEYS[11], ARGV[i + 6])
      if claim and string.sub(claim, 1, #consumer + 1) == consumer .. ' ' then
        redis.call('HDEL', KEYS[11], ARGV[i + 6])
      end
    end
    local s = stream(ARGV[i + 1])
    if redis.call('XACK', s, group, ARGV[i + 2]) == 1 then
      redis.call('XDEL', s, ARGV[i + 2])
      redis.call('DECR', KEYS[5])
      acked = acked + 1
      if ARGV[i + 3] ~= '' then redis.call('HINCRBY', KEYS[7], ARGV[i + 3], 1) end
      if ARGV[i + 4] ~= '' then redis.call('RPUSH', KEYS[8], ARGV[i + 4]) end
      if tonumber(ARGV[i + 5]) > 0 then redis.call('HINCRBY', KEYS[7], 'bytes_saved', ARGV[i + 5]) end
    end
    i = i + 8
  elseif op == 'K' then
    -- what a fetched page held and its validators, for the next update run
    redis.call('HSET', KEYS[12], ARGV[i + 1], ARGV[i + 2])
    i = i + 3
  elseif op == 'R' then
    local s = stream(ARGV[i + 1])
    if redis.call('XACK', s, group, ARGV[i + 2]) == 1 then
      redis.call('XDEL', s, ARGV[i + 2])
      redis.call('XADD', s, '*', 'j', ARGV[i + 3])
    end
    i = i + 4
  else
    return redis.error_reply('imgcrawl: unknown operation ' .. tostring(op))
  end
end
local open = tonumber(redis.call('GET', KEYS[5]) or '0')
if acked > 0 and open <= 0 then redis.call('SET', KEYS[6], '1') end
return open
"#;

/// Grants one request start to a host if the cluster's limits allow it. KEYS: the host's slots
/// (a sorted set of tokens scored by lease expiry), its next allowed start and its pause. ARGV:
/// token, in-flight limit (1 while a delay is set), delay (ms), lease (ms). Returns 0 (granted), -1 (at the in-flight
/// limit) or the milliseconds to wait. Redis's clock is the only one used, so processes on
/// machines with different clocks agree.
pub(super) const ACQUIRE: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local wait = 0
local pause = tonumber(redis.call('GET', KEYS[3]) or '0')
if pause > now then wait = pause - now end
local next = tonumber(redis.call('GET', KEYS[2]) or '0')
if next - now > wait then wait = next - now end
if wait > 0 then return wait end
-- With a delay, one request at a time: the next is granted once this one's slot is freed (after
-- the server had it) and a delay has passed, so no process's scheduling can bring two requests
-- closer together at the server.
local limit = tonumber(ARGV[2])
local delay = tonumber(ARGV[3])
if delay > 0 then limit = 1 end
if redis.call('ZCARD', KEYS[1]) >= limit then return -1 end
local lease = tonumber(ARGV[4])
redis.call('ZADD', KEYS[1], now + lease, ARGV[1])
redis.call('PEXPIRE', KEYS[1], lease)
if delay > 0 then redis.call('SET', KEYS[2], now + delay, 'PX', delay + 1000) end
return 0
"#;

/// Frees a request slot. KEYS: the host's slots and next start; ARGV: the token and the delay
/// (ms). The next start is also pushed to a delay after now: the request reached the server
/// before its slot was freed, so the server never sees two starts closer than the delay, however
/// late a process's request left after its grant.
pub(super) const RELEASE: &str = r#"
redis.call('ZREM', KEYS[1], ARGV[1])
local delay = tonumber(ARGV[2])
if delay > 0 then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local next = tonumber(redis.call('GET', KEYS[2]) or '0')
  if now + delay > next then redis.call('SET', KEYS[2], now + delay, 'PX', delay + 1000) end
end
return 0
"#;

/// Asks to be the process that stores some bytes. KEYS: where stored bytes are (`bytes`: SHA-256
/// to "consumer\npath") and who is storing which (`bytes:claims`: SHA-256 to "consumer expiry").
/// ARGV: the SHA-256, this consumer, the lease (ms). Returns `{'1', "consumer\npath"}` when the
/// bytes are already stored, `{'2', ms}` when another live process is storing them now (ask again; a claim
/// whose process died runs out with its lease), or `{'0'}`: the claim is this process's, until the
/// acknowledgement that registers the file (or the lease) ends it.
pub(super) const CLAIM_BYTES: &str = r#"
local stored = redis.call('HGET', KEYS[1], ARGV[1])
if stored then return {'1', stored} end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local claim = redis.call('HGET', KEYS[2], ARGV[1])
if claim then
  local who, expiry = string.match(claim, '^(.*) (%d+)$')
  if who ~= ARGV[2] and tonumber(expiry) > now then return {'2', tostring(tonumber(expiry) - now)} end
end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2] .. ' ' .. (now + tonumber(ARGV[3])))
return {'0'}
"#;

/// Pauses a host for ARGV[1] ms from now (never shortening a longer pause). KEYS: its pause.
pub(super) const PAUSE: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local untl = now + tonumber(ARGV[1])
local old = tonumber(redis.call('GET', KEYS[1]) or '0')
if untl > old then redis.call('SET', KEYS[1], untl, 'PX', tonumber(ARGV[1]) + 1000) end
return 0
"#;

/// Renews request slots: KEYS are slot sets, ARGV the token in each and then the lease (ms).
pub(super) const RENEW_SLOTS: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lease = tonumber(ARGV[#ARGV])
for i, key in ipairs(KEYS) do
  redis.call('ZADD', key, 'XX', now + lease, ARGV[i])
  redis.call('PEXPIRE', key, lease)
end
return 0
"#;

/// Starts an update run of a complete shared crawl: the next run number, and the crawl open
/// again with no page seen (pages are admitted again, each asked for with what `kept` holds of
/// it), its page budget and counters reset; images seen stay seen, so none saved is asked for
/// again. KEYS: done, run, seen:pages, admitted, stats, open. Returns `{1, run}` when it started
/// one, `{0, run}` when the crawl was not complete (the caller joins the run going on).
pub(super) const BEGIN_UPDATE: &str = r#"
local run = tonumber(redis.call('GET', KEYS[2]) or '1')
if redis.call('EXISTS', KEYS[1]) == 0 then return {0, run} end
run = run + 1
redis.call('SET', KEYS[2], run)
redis.call('DEL', KEYS[1], KEYS[3], KEYS[4], KEYS[5])
redis.call('SET', KEYS[6], 0)
return {1, run}
"#;

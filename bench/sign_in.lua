-- wrk script for the sign-in scenario of bench/run.sh: POST /api/sign_in as the app's own sign-in form
-- sends it (a same-origin fetch with a form body), so every request costs one argon2 verification and
-- creates one session.
--
--   wrk -t2 -c16 -d20s --latency -s bench/sign_in.lua http://127.0.0.1:PORT/api/sign_in \
--       -- EMAIL PASSWORD ORIGIN
--
-- wrk itself counts answers of 400 and above as "Non-2xx or 3xx responses"; the summary printed by
-- done() adds how many of each status came back, so a 429 (rate limit) or a 503 (overload) can be
-- told apart from a 400 (wrong password).

local threads = {}

-- Runs once per wrk thread, in the main Lua state: keep a handle to read its counters in done().
function setup(thread)
  table.insert(threads, thread)
end

local function form_encode(value)
  return (value:gsub("[^%w%-%._~]", function(c)
    return string.format("%%%02X", string.byte(c))
  end))
end

local request_bytes

-- Runs in each thread's own Lua state with the arguments after `--`.
function init(args)
  local email, password, origin = args[1], args[2], args[3]
  if not (email and password and origin) then
    error("usage: wrk ... -s sign_in.lua URL -- EMAIL PASSWORD ORIGIN")
  end
  statuses = {}
  -- The CSRF check wants the Origin of PUBLIC_URL and Sec-Fetch-Site: same-origin.
  request_bytes = wrk.format("POST", "/api/sign_in", {
    ["Content-Type"] = "application/x-www-form-urlencoded",
    ["Origin"] = origin,
    ["Sec-Fetch-Site"] = "same-origin",
  }, "email=" .. form_encode(email) .. "&password=" .. form_encode(password))
end

-- The same bytes every time: wrk then spends no time building requests.
function request()
  return request_bytes
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  local total = {}
  for _, thread in ipairs(threads) do
    for status, n in pairs(thread:get("statuses") or {}) do
      total[status] = (total[status] or 0) + n
    end
  end
  local codes = {}
  for status in pairs(total) do
    table.insert(codes, status)
  end
  table.sort(codes)
  for _, status in ipairs(codes) do
    io.write(string.format("  status %d: %d\n", status, total[status]))
  end
end

-- wrk: POST /graphql with a startRun mutation of the noop workflow WORKFLOW;
-- every request has its own idempotency key, so each one starts a run.
-- Answers other than `created: true` (a GraphQL error is still a 200) are counted.
local workflow = os.getenv("WORKFLOW")
local prefix = os.getenv("KEY_PREFIX") or "bench"
local threads = {}
local counter = 0
thread_id = 0
failures = 0

function setup(thread)
    table.insert(threads, thread)
    thread:set("thread_id", #threads)
end

function request()
    counter = counter + 1
    local key = prefix .. "-" .. thread_id .. "-" .. counter
    local body = '{"query":"mutation($w: String!, $k: String) { startRun(workflow: $w, idempotencyKey: $k) { created run { id } } }",'
        .. '"variables":{"w":"' .. workflow .. '","k":"' .. key .. '"}}'
    return wrk.format("POST", "/graphql", { ["Content-Type"] = "application/json" }, body)
end

function response(status, headers, body)
    if not string.find(body, '"created":true', 1, true) then
        failures = failures + 1
    end
end

function done(summary, latency, requests)
    local total = 0
    for _, thread in ipairs(threads) do
        total = total + thread:get("failures")
    end
    io.write("Failed answers: " .. total .. "\n")
end

-- wrk: POST /graphql with a run(id) query; the run id comes from RUN_ID.
-- Answers without the run (a GraphQL error is still a 200) are counted.
local run_id = os.getenv("RUN_ID")
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"query":"query($id: ID!) { run(id: $id) { id status lastSeq steps { id status } } }",'
    .. '"variables":{"id":"' .. run_id .. '"}}'

local threads = {}
failures = 0

function setup(thread)
    table.insert(threads, thread)
end

function response(status, headers, body)
    if not string.find(body, '"lastSeq"', 1, true) then
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

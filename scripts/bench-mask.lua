-- wrk script of scripts/bench-mask: POSTs the corpus's chat request bodies, one after
-- the other and round again, as
--   POST <BENCH_MASK_PREFIX>v1/chat/completions    Content-Type: application/json
-- Environment (set by scripts/bench-mask):
--   BENCH_MASK_CORPUS  JSONL file, one request body per line (required)
--   BENCH_MASK_PREFIX  route prefix, "/plain/" or "/masked/" (default "/plain/")
-- Each wrk thread reads the file once, in init(), and pre-formats every request, so a
-- request costs the load generator one table lookup, not a string build.
local corpus = os.getenv("BENCH_MASK_CORPUS")
local prefix = os.getenv("BENCH_MASK_PREFIX") or "/plain/"
local path = prefix .. "v1/chat/completions"
local requests, n, i = {}, 0, 0

function init(args)
  assert(corpus and corpus ~= "", "BENCH_MASK_CORPUS is not set")
  local f = assert(io.open(corpus, "rb"))
  for line in f:lines() do
    line = line:gsub("\r$", "")
    if #line > 0 then
      n = n + 1
      requests[n] = wrk.format("POST", path, { ["Content-Type"] = "application/json" }, line)
    end
  end
  f:close()
  assert(n > 0, "no request bodies in " .. corpus)
end

function request()
  i = i % n + 1
  return requests[i]
end

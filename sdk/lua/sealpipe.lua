---@meta sealpipe
-- LuaLS definitions of the sealpipe analysis API (see README.md in this
-- directory). Add this directory to `workspace.library` in .luarc.json.
-- Nothing here runs: the host provides these names.

---A TagoIO location.
---@class sealpipe.Location
---@field lat number latitude, -90..90
---@field lng number longitude, -180..180
---@field alt? number altitude

---A TagoIO data record, as handle() returns it and as msg.records holds it.
---@class sealpipe.Record
---@field variable string 1-100 bytes, stored lowercased; none of * ? ! < > . - = $ or spaces
---@field value? number|string|boolean strings <= 6144 bytes of UTF-8
---@field unit? string <= 25 bytes
---@field time? integer|string Unix milliseconds, or ISO 8601 ("2026-11-24T10:00:00Z")
---@field group? string <= 100 bytes
---@field serie? string old alias of group
---@field location? sealpipe.Location
---@field metadata? table<string, string|number|boolean> <= 10 KiB as JSON

---The device a message belongs to.
---@class sealpipe.Device
---@field serial string
---@field name string
---@field tags table<string, string>
---@field params table<string, string>

---What handle(msg) receives.
---@class sealpipe.Msg
---@field topic string MQTT topic the message arrived on
---@field payload string payload bytes, unchanged (may be binary)
---@field qos integer 0, 1 or 2
---@field retain boolean
---@field received integer receive time, Unix milliseconds
---@field device? sealpipe.Device nil when no device is known
---@field records sealpipe.Record[] default normalization (a "payload" record for raw data)

---An analysis's own limits: each a positive integer, clamped to the daemon's
---global limits (lua_instructions, lua_memory_mb, lua_timeout_ms, 1000
---records, 100 publishes), which they can lower but never raise. Unknown
---fields fail the load.
---@class sealpipe.Limits
---@field instructions? integer VM instructions per handle() call
---@field memory_mb? integer MiB for the analysis's Lua state
---@field timeout_ms? integer wall-clock time per handle() call
---@field records? integer records per message, returned and inserted
---@field publishes? integer publish() calls per handle() call
---@field publish_kb? integer largest publish() payload, KiB

---What tick(ctx) gets (README, "Triggers").
---@class sealpipe.TickCtx
---@field scheduled integer the due time this tick stands for, Unix ms
---@field missed integer due times folded into this tick (the daemon was down, or a tick ran long)
---@field previous? integer the due time of the tick before; nil for the first

---What run(ctx) gets for a run_analysis(name, payload) call.
---@class sealpipe.RunCtx
---@field payload string the payload (a table was sent as JSON)
---@field from string the calling analysis
---@field depth integer 1 for a run a message's analysis asked for, one more per run in a chain (at most 7)
---@field device? sealpipe.Device the caller's device; returned records are stored for it

---What event(ev) gets (README, "Device events").
---@class sealpipe.Event
---@field kind "connected"|"disconnected"|"offline"
---@field at integer when, Unix ms
---@field device sealpipe.Device the device
---@field client_id? string connected, disconnected: the MQTT client id
---@field address? string connected, disconnected: the peer address
---@field protocol? string connected, disconnected: e.g. "MQTT 5"
---@field reason? string disconnected: why, when known
---@field last_sent? integer offline: the device's last message, Unix ms
---@field silent_ms? integer offline: how long it has been silent
---@field offline_after? integer offline: the threshold that applied, ms

---A threshold from a device param (a number in its params), else default.
---@class sealpipe.ParamThreshold
---@field param string the device param's name
---@field default number

---One condition of `when` (README, "Conditions on stored data").
---@class sealpipe.Condition
---@field variable string
---@field above? number|sealpipe.ParamThreshold
---@field below? number|sealpipe.ParamThreshold
---@field equals? number|string|boolean
---@field changes? true
---@field hysteresis? number above/below: re-armed only past threshold -/+ this
---@field ["for"]? string how long it must hold before it fires, e.g. "5m"

---What condition(c) gets.
---@class sealpipe.ConditionCtx
---@field device sealpipe.Device
---@field variable string
---@field value any the record's value
---@field previous any the device's previous value of the variable, or nil
---@field time integer the record's time, Unix ms
---@field since integer when it began to hold, Unix ms
---@field condition integer which condition of `when`, 1-based
---@field transition "enter"
---@field threshold? number above/below: the threshold that applied

---What an analysis file returns: at least one of handle, tick, run, event and condition.
---@class sealpipe.Analysis
---@field topics? string[] MQTT filters; a level may be exactly "{serial}" (needs handle)
---@field handle? fun(msg: sealpipe.Msg): (sealpipe.Record|sealpipe.Record[]|nil)
---@field schedule? string "every 5m" (s, m, h, d) or 5 cron fields in UTC; needs tick
---@field tick? fun(ctx: sealpipe.TickCtx) runs once per due time (missed ones fold into one); no device: use insert(records, serial)
---@field run? fun(ctx: sealpipe.RunCtx): (sealpipe.Record|sealpipe.Record[]|nil)
---@field on? ("connected"|"disconnected"|"offline")[] device events; needs event
---@field offline_after? string with "offline" in on: "10s" to "366d"; a device's param offline_after overrides it
---@field event? fun(ev: sealpipe.Event): (sealpipe.Record|sealpipe.Record[]|nil)
---@field when? sealpipe.Condition|sealpipe.Condition[] conditions on stored data (at most 16); needs condition
---@field condition? fun(c: sealpipe.ConditionCtx): (sealpipe.Record|sealpipe.Record[]|nil)
---@field devices? {tags: table<string, string>} which devices on and when watch
---@field webhooks? string[] hosts webhook() may call (<= 32): "host", "host:port", "*.domain", an IPv4 address or "[IPv6]"; default none
---@field limits? sealpipe.Limits

---@class sealpipe.PublishOpts
---@field qos? integer 0 (default), 1 or 2
---@field retain? boolean default false
---@field seal_for? string a device serial: send the payload (an ACK inner frame such as "CMD|x=1", at most 16384 bytes) as a TagoTiP/S envelope sealed with that device's key

---Queues an MQTT message, sent after the records are committed. Only while a
---handler runs; at most 100 per call; topic without wildcards or a leading '$'.
---@param topic string
---@param payload string
---@param opts? sealpipe.PublishOpts
function publish(topic, payload, opts) end

---Stores records for a device (default msg.device.serial), with the
---message's records and only if handle() succeeds. Records follow the rules
---of handle()'s return value; serial is 1-100 characters of A-Z a-z 0-9 _ -.
---Only while a handler runs; at most 10 calls per handle()/event() call and
---100 per tick()/run() call, and inserted plus returned records count
---against the records limit. Raises on bad input.
---@param records sealpipe.Record|sealpipe.Record[]
---@param serial? string
function insert(records, serial) end

---Queues a run of analysis name's run(ctx), after this call's results are
---committed and only if it succeeds. payload: UTF-8 text or a table (sent as
---JSON), at most 64 KiB; at most 10 calls per handler call. The target must
---be loaded with a run function, or this call's message fails.
---@param name string
---@param payload? string|table
function run_analysis(name, payload) end

---@class sealpipe.WebhookOpts
---@field headers? table<string, string> at most 32; token names, values without control characters; not Host, Content-Length, Transfer-Encoding, Connection, Expect, Upgrade, TE or Sealpipe-*
---@field method? "POST"|"PUT"|"PATCH"|"DELETE"|"GET" default "POST"

---Queues an HTTP request, sent by the daemon after this call's results are
---committed and only if it succeeds; retried on no answer, a timeout, 408,
---425, 429 and 5xx, a webhook_failed dead letter otherwise; redirects are
---not followed. url: http or https, its host (and port) in the analysis's
---`webhooks` list, else an error. body: bytes (at most 256 KiB) or a table,
---sent as JSON (Content-Type application/json unless a header says
---otherwise). At most 10 calls per handler call. Each request carries
---Sealpipe-Delivery (the same on every attempt) and Sealpipe-Attempt.
---@param url string
---@param body? string|table
---@param opts? sealpipe.WebhookOpts
function webhook(url, body, opts) end

---@class sealpipe.Query
---@field serial? string device; default msg.device.serial
---@field variable? string one variable (matched lowercased); default every variable
---@field qty? integer most records, 1-100; default 1
---@field start? integer|string inclusive lower time bound, Unix ms or ISO 8601
---@field stop? integer|string inclusive upper time bound, Unix ms or ISO 8601

---Reads committed records of a device, newest first (records of the current
---batch are not visible yet). Only while a handler runs; at most 10 calls per
---handle()/event() call and 100 per tick()/run() call, devices() and
---aggregate() included. Bad arguments raise; a failure of the daemon returns
---nil, err.
---@param q? sealpipe.Query
---@return sealpipe.Record[]|nil records
---@return string? err
function query(q) end

---@class sealpipe.DevicesQuery
---@field tags? table<string, string> at most 16; a device must have each, with that value
---@field after? string only devices whose serial comes after this one ("" or nil: from the first)
---@field limit? integer most devices, 1-1000; default 1000

---@class sealpipe.DeviceStatus: sealpipe.Device
---@field connected boolean it has an MQTT connection now
---@field last_sent? integer its last message, Unix ms (may lag a few seconds); nil when it never sent

---Lists registered devices in serial order, a page at a time (page with
---after = the last serial while pages come back full). Counts as a query()
---call. Bad arguments raise; a failure of the daemon returns nil, err.
---@param q? sealpipe.DevicesQuery
---@return sealpipe.DeviceStatus[]|nil devices
---@return string? err
function devices(q) end

---@class sealpipe.AggregateQuery
---@field variable string required, matched lowercased
---@field serial? string device; default the handler's device (required in tick)
---@field start? integer|string inclusive lower time bound, Unix ms or ISO 8601
---@field stop? integer|string inclusive upper time bound, Unix ms or ISO 8601

---@class sealpipe.Aggregate
---@field count integer numeric records in the range
---@field min? number nil when count is 0, as the others
---@field max? number
---@field avg? number
---@field sum? number
---@field first? number the value of the oldest record
---@field last? number the value of the newest record

---Reduces a variable's committed numeric records in a time range. Counts as
---a query() call. Bad arguments raise; a failure of the daemon returns nil, err.
---@param q sealpipe.AggregateQuery
---@return sealpipe.Aggregate|nil result
---@return string? err
function aggregate(q) end

---@class sealpipe.DeleteData
---@field before integer|string required: records with time before this, Unix ms or ISO 8601
---@field serial? string device; default the handler's device (required in tick)
---@field variable? string only this variable; default every variable

---Deletes a device's old records, in the transaction that stores this
---call's results and only if it succeeds (an unknown device fails it, as
---insert() does): at most 10,000 records per call, the oldest first; at most
---10 calls per handler call. Raises on bad input.
---@param d sealpipe.DeleteData
function delete_data(d) end

hex = {}

---Lowercase hex of the bytes of s.
---@param s string
---@return string
function hex.encode(s) end

---Bytes of hex text (either case).
---@param s string
---@return string|nil bytes
---@return string? err odd length, or the position of a non-hex character
function hex.decode(s) end

base64 = {}

---Standard base64 with padding.
---@param s string
---@return string
function base64.encode(s) end

---Bytes of base64 text: the standard (+/) or the URL-safe (-_) alphabet,
---not both; padding absent or exactly right; canonical (the unused low
---bits of the last character zero: "QQ==" is "A", "QR==" is refused).
---@param s string
---@return string|nil bytes
---@return string? err
function base64.decode(s) end

---Logs one line: the arguments as tostring() shows them (no metamethods),
---separated by spaces; control characters escaped. The daemon writes it to
---its log. At most 20 lines of <= 1 KiB per handle() call (later ones are
---dropped, longer ones cut); lines logged at the top level are discarded.
---@param ... any
function log(...) end

---The same function as log().
---@param ... any
function print(...) end

---The analysis's variables from analyses/<name>.env (KEY=VALUE lines);
---empty without the file. This analysis's own copy: treat it as read-only.
---@type table<string, string>
env = {}

json = {}

---Stands for JSON null: json.decode gives it, json.encode writes it as null.
---@type userdata
json.null = nil

---json.encode writes it as [] (an empty table is {}).
---@type userdata
json.empty_array = nil

---Decodes JSON text (<= 1 MiB, nesting <= 32). Objects become tables,
---arrays lists, null json.null; numbers are read as doubles (integers exact
---up to 2^53), and integral ones in the integer range become integers.
---@param s string
---@return any|nil value
---@return string? err "json.decode: ..." (syntax, depth, size, not enough memory)
function json.decode(s) end

---Encodes a value as compact JSON. Tables with only string keys are objects
---(keys sorted), with keys exactly 1..n arrays; {} is {}. Fails on mixed
---keys, cycles, NaN/inf, non-UTF-8 strings, functions, nesting > 32 and
---output > 1 MiB.
---@param v any
---@return string|nil text
---@return string? err "json.encode: ..."
function json.encode(v) end

---A TagoTiP passthrough body, decoded.
---@class sealpipe.Passthrough
---@field passthrough "x"|"b" hex (>x) or base64 (>b)
---@field data string the decoded bytes

tagotip = {}

---Parses a TagoTiP PUSH body: a structured body gives a list of records
---(value, unit, time, group, location, metadata as handle() returns them), a
---passthrough body (>x... or >b...) a sealpipe.Passthrough.
---@param body string
---@return sealpipe.Record[]|sealpipe.Passthrough|nil result
---@return string? err the specification's code, e.g. "invalid_payload"
function tagotip.parse(body) end

---Sends the TagoTiP command "CMD|<command>" to a device on its ack topic,
---after the message's records are committed: sealed for the device with its
---current key on "$tips/<serial>/ack", or in the clear on "$tip/<serial>/ack"
---with plain = true. Counts as one publish() against the limits.
---@param serial string device serial
---@param command string printable ASCII without spaces and "|", e.g. "reboot"
---@param opts? {plain?: boolean, qos?: integer} qos defaults to 1
function tagotip.command(serial, command, opts) end

---table.unpack.
---@generic T
---@param list T[]
---@param i? integer
---@param j? integer
---@return T ...
function unpack(list, i, j) end

-- Not available in analyses (see README.md, "What is not available").
load = nil
loadstring = nil
dofile = nil
loadfile = nil
require = nil
package = nil
io = nil
debug = nil
collectgarbage = nil
setmetatable = nil
getmetatable = nil

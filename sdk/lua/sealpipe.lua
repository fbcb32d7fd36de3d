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

---What an analysis file returns.
---@class sealpipe.Analysis
---@field topics? string[] MQTT filters; a level may be exactly "{serial}"
---@field handle fun(msg: sealpipe.Msg): (sealpipe.Record|sealpipe.Record[]|nil)

---@class sealpipe.PublishOpts
---@field qos? integer 0 (default), 1 or 2
---@field retain? boolean default false

---Queues an MQTT message, sent after the records are committed. Only inside
---handle(); at most 100 per call; topic without wildcards or a leading '$'.
---@param topic string
---@param payload string
---@param opts? sealpipe.PublishOpts
function publish(topic, payload, opts) end

hex = {}

---Lowercase hex of the bytes of s.
---@param s string
---@return string
function hex.encode(s) end

---Bytes of hex text (either case).
---@param s string
---@return string|nil bytes
---@return string? err odd length or a non-hex character
function hex.decode(s) end

base64 = {}

---Standard base64 with padding.
---@param s string
---@return string
function base64.encode(s) end

---Bytes of base64 text (standard or URL-safe alphabet, padding optional).
---@param s string
---@return string|nil bytes
---@return string? err
function base64.decode(s) end

---Accepted; the output is discarded.
---@param ... any
function print(...) end

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

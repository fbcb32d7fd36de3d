-- Test analysis for test_luaapi.py: calls every function of the reference in
-- sdk/lua/README.md with ordinary and edge arguments, inside the real worker.
--
-- One message per group (the last topic level names it). Each case is run
-- with pcall and becomes one record:
--   {variable = "case", value = "pass" | "FAIL",
--    metadata = {fn, kind, name, got, want}}
-- kind "ok": returns exactly `want`; "err": raises an error containing
-- `want`; "fail": returns nil and a message containing `want` (the host
-- functions that report errors as values); "any": anything but a crash.
-- The group "inventory" returns what the environment holds, for the test
-- to compare with the README's list.

local NAN = 0 / 0

-- A deterministic text form of any value; bytes that are not printable
-- ASCII become \xNN so the result is valid UTF-8 metadata.
local function ser(v, depth)
  depth = depth or 0
  local t = type(v)
  if t == "string" then
    return '"' .. v:gsub('[%c"\\\128-\255]', function(ch)
      return string.format("\\x%02x", ch:byte())
    end) .. '"'
  elseif t == "number" then
    if math.type(v) == "integer" then
      return string.format("%d", v)
    elseif v ~= v then
      return "nan"
    elseif v == math.huge then
      return "inf"
    elseif v == -math.huge then
      return "-inf"
    end
    local s = string.format("%.17g", v)
    if not s:find("[%.e]") then
      s = s .. ".0"
    end
    return s
  elseif t == "table" then
    if depth > 4 then
      return "{...}"
    end
    local keys = {}
    for k in pairs(v) do
      keys[#keys + 1] = k
    end
    table.sort(keys, function(a, b)
      local ta, tb = type(a), type(b)
      if ta ~= tb then
        return ta < tb
      end
      if ta == "number" or ta == "string" then
        return a < b
      end
      return false
    end)
    local parts = {}
    for _, k in ipairs(keys) do
      parts[#parts + 1] = "[" .. ser(k, depth + 1) .. "]=" .. ser(v[k], depth + 1)
    end
    return "{" .. table.concat(parts, ",") .. "}"
  elseif v == json.null then
    return "json.null"
  elseif v == json.empty_array then
    return "json.empty_array"
  end
  return t == "nil" and "nil" or t == "boolean" and tostring(v) or t
end

local function serall(p)
  local parts = {}
  for i = 1, p.n do
    parts[i] = ser(p[i])
  end
  return table.concat(parts, ", ")
end

local function cut(s)
  if #s > 300 then
    return s:sub(1, 300) .. "..."
  end
  return s
end

-- The cases of the current message.
local cases

local function add(kind, fn, name, f, ...)
  cases[#cases + 1] = { kind = kind, fn = fn, name = name, f = f, want = table.pack(...) }
end
local function ok(fn, name, f, ...) add("ok", fn, name, f, ...) end
local function err(fn, name, f, pat) add("err", fn, name, f, pat) end
local function fail(fn, name, f, pat) add("fail", fn, name, f, pat) end
local function any(fn, name, f) add("any", fn, name, f) end
-- ok, checked by a predicate over the results instead of equality.
local function ok_if(fn, name, f, pred) add("ok", fn, name, f, pred) end

local function run_case(c)
  local r = table.pack(pcall(c.f))
  local got, want, pass
  if r[1] then
    got = serall(table.pack(table.unpack(r, 2, r.n)))
  else
    got = "error: " .. ser(r[2])
  end
  if c.kind == "ok" then
    if type(c.want[1]) == "function" then
      want = "(predicate)"
      pass = r[1] and c.want[1](table.unpack(r, 2, r.n)) == true
    else
      want = serall(c.want)
      pass = r[1] and got == want
    end
  elseif c.kind == "err" then
    want = "error containing " .. ser(c.want[1])
    pass = not r[1] and type(r[2]) == "string" and r[2]:find(c.want[1], 1, true) ~= nil
  elseif c.kind == "fail" then
    want = "nil, message containing " .. ser(c.want[1])
    pass = r[1] and r.n == 3 and r[2] == nil and type(r[3]) == "string" and
           r[3]:find(c.want[1], 1, true) ~= nil
  else
    want = "no crash"
    pass = true
  end
  return {
    variable = "case",
    value = pass and "pass" or "FAIL",
    metadata = { fn = c.fn, kind = c.kind, name = c.name, got = cut(got), want = cut(want) },
  }
end

local function approx(x)
  return function(v)
    return type(v) == "number" and math.abs(v - x) < 1e-9
  end
end

local function raises(f, ...)
  return (pcall(f, ...)) == false
end

-- What the host functions do at the top level (outside handle()).
local TOP = {
  publish = table.pack(pcall(publish, "luaapi-out/top", "x")),
  insert = table.pack(pcall(insert, { variable = "top" }, "api-01")),
  query = table.pack(pcall(query, { serial = "api-01" })),
  command = table.pack(pcall(tagotip.command, "api-01", "x", { plain = true })),
  webhook = table.pack(pcall(webhook, "http://127.0.0.1:9/top", "x")),
  env = env.THRESHOLD,
}

-- Replays a result recorded by TOP.
local function replay(r)
  if not r[1] then
    error(r[2], 0)
  end
  return table.unpack(r, 2, r.n)
end

------------------------------------------------------------------------------
local G = {}

function G.base(msg)
  ok("assert", "true passes its arguments on", function() return assert(1, 2) end, 1, 2)
  err("assert", "false raises the message", function() return assert(false, "boom") end, "boom")
  err("assert", "no argument", function() return assert() end, "value expected")
  ok("error", "a table error object", function()
    local okk, e = pcall(error, { code = 7 })
    return okk, e.code
  end, false, 7)
  err("error", "a string with position", function() error("bad thing") end, "bad thing")
  ok("error", "level 0 adds no position", function() return pcall(error, "x", 0) end, false, "x")
  ok("ipairs", "stops at the first nil", function()
    local n = 0
    for _ in ipairs({ 1, 2, nil, 4 }) do n = n + 1 end
    return n
  end, 2)
  err("ipairs", "no argument", function() return ipairs() end, "bad argument #1 to 'ipairs'")
  ok("next", "empty table", function() return next({}) end, nil)
  ok("next", "one entry", function() return next({ a = 1 }) end, "a", 1)
  err("next", "a key that is not in the table", function() return next({}, "nope") end,
      "invalid key to 'next'")
  ok("pairs", "counts every key", function()
    local n = 0
    for _ in pairs({ 1, 2, x = 3, [0.5] = 4 }) do n = n + 1 end
    return n
  end, 4)
  err("pairs", "iterating nil", function() for _ in pairs(nil) do end end, "table expected")
  ok("pcall", "success", function() return pcall(function(a) return a * 2 end, 21) end, true, 42)
  ok("pcall", "failure", function() return pcall(error, "e", 0) end, false, "e")
  err("pcall", "no argument", function() return pcall() end, "value expected")
  ok("xpcall", "handler sees the error", function()
    return xpcall(error, function(m) return "h:" .. m end, "x", 0)
  end, false, "h:x")
  ok("xpcall", "success passes arguments", function()
    return xpcall(function(a, b) return a + b end, error, 2, 3)
  end, true, 5)
  err("xpcall", "no handler", function() return xpcall(error, nil, "x") end,
      "bad argument #2 to 'xpcall' (function expected")
  err("xpcall", "no function", function() return xpcall() end, "bad argument #2 to 'xpcall'")
  ok("rawequal", "same table", function()
    local t = {}
    return rawequal(t, t), rawequal({}, {}), rawequal(1, 1.0)
  end, true, false, true)
  err("rawequal", "one argument", function() return rawequal(1) end, "value expected")
  ok("rawlen", "table and string", function() return rawlen({ 1, 2, 3 }), rawlen("abcd") end, 3, 4)
  err("rawlen", "a number", function() return rawlen(5) end, "table or string expected")
  ok("rawget", "present and absent", function() return rawget({ a = 1 }, "a"), rawget({}, "b") end,
     1, nil)
  err("rawget", "not a table", function() return rawget("s", 1) end, "table expected")
  ok("rawset", "returns the table", function()
    local t = {}
    return rawset(t, "k", "v") == t, t.k
  end, true, "v")
  err("rawset", "nil key", function() return rawset({}, nil, 1) end, "index is nil")
  err("rawset", "NaN key", function() return rawset({}, NAN, 1) end, "index is NaN")
  ok("select", "count and negative", function()
    return select("#", 1, nil, nil), select(-1, "a", "b"), select(2, "a", "b", "c")
  end, 3, "b", "b", "c")
  err("select", "index 0", function() return select(0, 1) end, "index out of range")
  err("select", "math.mininteger", function() return select(math.mininteger, 1) end,
      "index out of range")
  ok("tonumber", "forms", function()
    return tonumber("0x10"), tonumber("  12  "), tonumber("1e2"), tonumber("10", 2),
           tonumber("z", 36), tonumber("1e"), tonumber(""), tonumber("8", 8), tonumber(nil)
  end, 16, 12, 100.0, 2, 35, nil, nil, nil, nil)
  ok("tonumber", "huge and tiny", function()
    return tonumber("1e400"), tonumber("9223372036854775808"), tonumber("-9223372036854775808")
  end, math.huge, 9.2233720368547758e18, math.mininteger)
  err("tonumber", "base out of range", function() return tonumber("10", 99) end,
      "base out of range")
  err("tonumber", "no argument", function() return tonumber() end, "value expected")
  ok("tostring", "values", function()
    return tostring(nil), tostring(true), tostring(42), tostring(-0.0), tostring(1 / 0),
           tostring(2 ^ 63), tostring(math.mininteger), tostring("s")
  end, "nil", "true", "42", "-0.0", "inf", "9.2233720368548e+18", "-9223372036854775808", "s")
  ok_if("tostring", "a table", function() return tostring({}) end,
        function(s) return s:match("^table: 0x%x+$") ~= nil end)
  err("tostring", "no argument", function() return tostring() end, "value expected")
  ok("type", "every type", function()
    return type(nil), type(1), type("s"), type({}), type(print), type(true),
           type(coroutine.create(function() end)), type(json.null)
  end, "nil", "number", "string", "table", "function", "boolean", "thread", "userdata")
  err("type", "no argument", function() return type() end, "value expected")
  ok("unpack", "a range", function() return unpack({ 1, 2, 3 }, 2) end, 2, 3)
  err("unpack", "too many results", function() return unpack({}, 1, 1e8) end,
      "too many results")
  ok("_VERSION", "is Lua 5.4", function() return _VERSION end, "Lua 5.4")
end

function G.string(msg)
  ok("string.byte", "ordinary and clamped", function()
    return string.byte("ABC"), string.byte("ABC", -1), string.byte("ABC", 1, math.maxinteger)
  end, 65, 67, 65, 66, 67)
  ok("string.byte", "empty string", function() return select("#", string.byte("", 1)) end, 0)
  err("string.byte", "not a string", function() return string.byte({}) end, "string expected")
  ok("string.char", "bytes and none", function() return string.char(72, 0, 255), string.char() end,
     "H\0\255", "")
  err("string.char", "256", function() return string.char(256) end, "value out of range")
  err("string.char", "negative", function() return string.char(-1) end, "value out of range")
  ok("string.find", "plain and pattern", function()
    return { string.find("a.b", ".", 1, true) }, string.find("key=val", "(%w+)=(%w+)")
  end, { 2, 2 }, 1, 7, "key", "val")
  ok("string.find", "init past the end, empty pattern", function()
    return string.find("x", "", 10), { string.find("", "") }
  end, nil, { 1, 0 })
  ok("string.find", "invalid UTF-8 subject", function() return string.find("\255\254", "\254") end,
     2, 2)
  err("string.find", "malformed pattern", function() return string.find("abc", "[") end,
      "malformed pattern")
  err("string.find", "subject over 64 KiB", function()
    return string.find(("a"):rep(65537), "b")
  end, "subjects up to")
  ok("string.format", "conversions", function()
    return string.format("%d %5.2f %s %q %x %g %%", 42, 3.14159, "s", "a\nb", 255, 1e20)
  end, "42  3.14 s \"a\\\nb\" ff 1e+20 %")
  ok("string.format", "%q of special numbers", function()
    return string.format("%q %q %q", NAN, math.huge, math.mininteger)
  end, "(0/0) 1e9999 0x8000000000000000")
  ok("string.format", "%a and huge %f", function()
    return string.format("%a", 1.0), #string.format("%.3f", 1e308)
  end, "0x1p+0", 313)
  err("string.format", "%d of a float", function() return string.format("%d", 3.5) end,
      "number has no integer representation")
  err("string.format", "trailing %", function() return string.format("%", 1) end,
      "invalid conversion")
  err("string.format", "missing argument", function() return string.format("%s") end,
      "no value")
  err("string.format", "too long a format", function() return string.format("%123d", 1) end,
      "invalid conversion")
  ok("string.gmatch", "iterates", function()
    local t = {}
    for k, v in string.gmatch("a=1, b=2", "(%w+)=(%w+)") do t[#t + 1] = k .. v end
    return table.concat(t, ";")
  end, "a1;b2")
  err("string.gmatch", "malformed pattern", function()
    for _ in string.gmatch("abc", "%") do end
  end, "malformed pattern")
  ok("string.gsub", "string, table and function", function()
    return (string.gsub("$a $b", "%$(%w)", { a = "1" })),
           (string.gsub("abc", "%w", function(c) return c:upper() end)),
           string.gsub("hello world", "o", "0")
  end, "1 $b", "ABC", "hell0 w0rld", 2)
  ok("string.gsub", "max replacements and empty match", function()
    return (string.gsub("ab", "", "-")), string.gsub("aaa", "a", "b", 2)
  end, "-a-b-", "bba", 2)
  err("string.gsub", "invalid capture", function() return string.gsub("abc", "b", "%2") end,
      "invalid capture index")
  err("string.gsub", "bad replacement type", function() return string.gsub("abc", "b", true) end,
      "string/function/table expected")
  ok("string.len", "embedded zero and invalid UTF-8", function()
    return string.len("a\0b"), string.len(""), string.len("\255")
  end, 3, 0, 1)
  err("string.len", "nil", function() return string.len(nil) end, "string expected")
  ok("string.lower", "ASCII only", function() return string.lower("AbC\195\137") end,
     "abc\195\137")
  err("string.lower", "no argument", function() return string.lower() end, "string expected")
  ok("string.upper", "ASCII only", function() return string.upper("aBc\0") end, "ABC\0")
  err("string.upper", "a table", function() return string.upper({}) end, "string expected")
  ok("string.match", "captures and anchors", function()
    return string.match("x", "y"), string.match("2024-01-02", "^(%d+)-(%d+)-(%d+)$")
  end, nil, "2024", "01", "02")
  ok("string.match", "position capture", function()
    return string.match("hello", "()ll()")
  end, 3, 5)
  err("string.match", "pattern too complex", function()
    return string.match("a", ("("):rep(40) .. "a" .. (")"):rep(40))
  end, "too many captures")
  ok("string.rep", "with separator, zero, negative", function()
    return string.rep("ab", 3, ","), string.rep("x", 0), string.rep("x", -5)
  end, "ab,ab,ab", "", "")
  err("string.rep", "over 1 MiB", function() return string.rep("x", 2 ^ 40) end, "larger than")
  err("string.rep", "empty string a huge number of times", function()
    return string.rep("", math.maxinteger)
  end, "larger than")
  err("string.rep", "not an integer", function() return string.rep("x", 1e300) end,
      "number has no integer representation")
  ok("string.reverse", "bytes", function() return string.reverse("ab\0c"), string.reverse("") end,
     "c\0ba", "")
  err("string.reverse", "nil", function() return string.reverse() end, "string expected")
  ok("string.sub", "ranges", function()
    return string.sub("hello", 2, 3), string.sub("hello", -3), string.sub("hello", -100, 100),
           string.sub("hello", math.mininteger, math.maxinteger), string.sub("hello", 4, 2)
  end, "el", "llo", "hello", "hello", "")
  err("string.sub", "no start", function() return string.sub("hello") end, "number expected")
  ok("string methods", "through the string metatable", function()
    return ("abc"):upper(), ("x"):rep(2), ("abc").dump
  end, "ABC", "xx", nil)
end

function G.pack(msg)
  ok("string.pack", "big-endian fields", function()
    return string.pack(">i2 B", -2, 255), string.pack("<I2", 0x0102)
  end, "\255\254\255", "\2\1")
  ok("string.pack", "round trip of every kind", function()
    local s = string.pack("<i8 I4 f d z s1 j n B", math.mininteger, 4294967295, 0.5, -1 / 3,
                          "zs", "len", math.maxinteger, 2.5, 0)
    return string.unpack("<i8 I4 f d z s1 j n B", s)
  end, math.mininteger, 4294967295, 0.5, -1 / 3, "zs", "len", math.maxinteger, 2.5, 0, 49)
  ok_if("string.pack", "NaN and infinity survive", function()
    return string.unpack(">d d", string.pack(">d d", NAN, -math.huge))
  end, function(a, b) return a ~= a and b == -math.huge end)
  err("string.pack", "unsigned overflow", function() return string.pack("B", 256) end, "overflow")
  err("string.pack", "signed overflow", function() return string.pack("i1", 128) end, "overflow")
  err("string.pack", "size 17", function() return string.pack("i17", 1) end, "out of limits")
  err("string.pack", "zero in z", function() return string.pack("z", "a\0b") end,
      "contains zeros")
  err("string.pack", "string too long for its length", function()
    return string.pack("s1", ("x"):rep(256))
  end, "does not fit")
  err("string.pack", "invalid option", function() return string.pack("y", 1) end,
      "invalid format option")
  ok("string.unpack", "position and offset", function()
    return string.unpack(">I2", "\0\1\0\2", 3)
  end, 2, 5)
  ok("string.unpack", "negative offset", function() return string.unpack("B", "\1\2\3", -1) end,
     3, 4)
  err("string.unpack", "data too short", function() return string.unpack(">i4", "\1\2") end,
      "data string too short")
  err("string.unpack", "offset out of string", function() return string.unpack("B", "x", 5) end,
      "out of string")
  err("string.unpack", "unfinished z", function() return string.unpack("z", "abc") end,
      "unfinished string")
  ok("string.packsize", "fixed formats", function()
    return string.packsize("i4 i8"), string.packsize("!8 i1 i8"), string.packsize("")
  end, 12, 16, 0)
  err("string.packsize", "variable length", function() return string.packsize("s") end,
      "variable-length format")
end

function G.table(msg)
  ok("table.concat", "numbers and strings", function()
    return table.concat({ 1, 2.5, "x" }, ","), table.concat({}), table.concat({ "a", "b" }, "", 2)
  end, "1,2.5,x", "", "b")
  err("table.concat", "a table element", function() return table.concat({ {} }) end,
      "invalid value")
  err("table.concat", "range to maxinteger", function()
    return table.concat({}, ",", 1, math.maxinteger)
  end, "invalid value")
  ok("table.insert", "append and position", function()
    local t = { 1, 3 }
    table.insert(t, 4)
    table.insert(t, 2, 2)
    return table.concat(t, ",")
  end, "1,2,3,4")
  err("table.insert", "position out of bounds", function() return table.insert({ 1 }, 5, 1) end,
      "position out of bounds")
  err("table.insert", "wrong number of arguments", function() return table.insert({}, 1, 2, 3) end,
      "wrong number of arguments")
  err("table.insert", "maxinteger", function() return table.insert({}, math.maxinteger, 1) end,
      "position out of bounds")
  ok("table.move", "overlapping and to another table", function()
    local t = table.move({ 1, 2, 3 }, 1, 3, 2)
    local u = table.move({ 1, 2 }, 1, 2, 1, { 9, 9, 9 })
    return table.concat(t, ","), table.concat(u, ",")
  end, "1,1,2,3", "1,2,9")
  err("table.move", "over a million elements", function()
    return table.move({}, 1, math.maxinteger, 2)
  end, "more than")
  err("table.move", "no table", function() return table.move(nil, 1, 2, 3) end, "table expected")
  ok("table.pack", "keeps n with nils", function()
    local t = table.pack(1, nil, 3)
    return t.n, t[3], table.pack().n
  end, 3, 3, 0)
  ok("table.remove", "positions", function()
    local t = { 1, 2, 3 }
    return table.remove(t, 1), table.remove(t), table.remove({}), #t
  end, 1, 3, nil, 1)
  err("table.remove", "position out of bounds", function() return table.remove({ 1 }, 5) end,
      "position out of bounds")
  ok("table.sort", "default and comparator", function()
    local a, b = { 3, 1, 2 }, { "b", "c", "a" }
    table.sort(a)
    table.sort(b, function(x, y) return x > y end)
    return table.concat(a, ","), table.concat(b, ",")
  end, "1,2,3", "c,b,a")
  err("table.sort", "mixed types", function() return table.sort({ 1, "x", 2 }) end,
      "attempt to compare")
  any("table.sort", "an inconsistent comparator", function()
    local t = {}
    for i = 1, 200 do t[i] = i % 7 end
    table.sort(t, function() return true end)
  end)
  ok("table.unpack", "range with nils", function() return table.unpack({ 1, nil, 3 }, 1, 3) end,
     1, nil, 3)
  err("table.unpack", "too many results", function()
    return table.unpack({}, math.mininteger, math.maxinteger)
  end, "too many results")
end

function G.math(msg)
  ok("math.abs", "values", function()
    return math.abs(-3), math.abs(-2.5), math.abs(math.mininteger)
  end, 3, 2.5, math.mininteger)
  err("math.abs", "a string", function() return math.abs("x") end, "number expected")
  ok("math.ceil", "values", function()
    return math.ceil(1.2), math.ceil(-1.2), math.ceil(2 ^ 70)
  end, 2, -1, 2 ^ 70)
  err("math.ceil", "nil", function() return math.ceil() end, "number expected")
  ok("math.floor", "values", function() return math.floor(1.8), math.floor(-1.2), math.floor(5) end,
     1, -2, 5)
  ok_if("math.floor", "NaN stays a float NaN", function() return math.floor(NAN) end,
        function(v) return v ~= v end)
  err("math.floor", "a table", function() return math.floor({}) end, "number expected")
  ok("math.fmod", "values", function()
    return math.fmod(7, 3), math.fmod(-7, 3), math.fmod(7.5, 2)
  end, 1, -1, 1.5)
  ok_if("math.fmod", "float by zero is NaN", function() return math.fmod(1.0, 0) end,
        function(v) return v ~= v end)
  err("math.fmod", "integer by zero", function() return math.fmod(1, 0) end, "zero")
  ok("math.modf", "a float", function() return math.modf(3.75) end, 3, 0.75)
  ok("math.modf", "negative, integer, infinity", function()
    return { math.modf(-3.5) }, { math.modf(5) }, math.modf(math.huge)
  end, { -3, -0.5 }, { 5, 0.0 }, math.huge, 0.0)
  err("math.modf", "a string", function() return math.modf("x") end, "number expected")
  ok("math.max", "mixed", function() return math.max(1, 2.5, -1), math.max(3) end, 2.5, 3)
  err("math.max", "no argument", function() return math.max() end, "bad argument #1 to 'max'")
  ok("math.min", "mixed", function() return math.min(1, 2.5, -1), math.min(math.mininteger, 0) end,
     -1, math.mininteger)
  err("math.min", "no argument", function() return math.min() end, "bad argument #1 to 'min'")
  ok("math.sqrt", "values", function() return math.sqrt(16), math.sqrt(2) end, 4.0, 2 ^ 0.5)
  ok_if("math.sqrt", "negative is NaN", function() return math.sqrt(-1) end,
        function(v) return v ~= v end)
  err("math.sqrt", "nil", function() return math.sqrt() end, "number expected")
  ok("math.exp", "values", function() return math.exp(0), math.exp(1000) end, 1.0, math.huge)
  err("math.exp", "a string", function() return math.exp("e") end, "number expected")
  ok("math.log", "bases", function()
    return math.log(1), math.log(8, 2), math.log(100, 10), math.log(0)
  end, 0.0, 3.0, 2.0, -math.huge)
  err("math.log", "nil", function() return math.log() end, "number expected")
  ok_if("math.sin", "sin(pi/2)", function() return math.sin(math.pi / 2) end, approx(1))
  err("math.sin", "nil", function() return math.sin() end, "number expected")
  ok_if("math.cos", "cos(0)", function() return math.cos(0) end, approx(1))
  err("math.cos", "nil", function() return math.cos() end, "number expected")
  ok_if("math.tan", "tan(pi/4)", function() return math.tan(math.pi / 4) end, approx(1))
  err("math.tan", "nil", function() return math.tan() end, "number expected")
  ok_if("math.asin", "asin(1)", function() return math.asin(1) end, approx(math.pi / 2))
  err("math.asin", "nil", function() return math.asin() end, "number expected")
  ok_if("math.acos", "acos(1)", function() return math.acos(1) end, approx(0))
  err("math.acos", "nil", function() return math.acos() end, "number expected")
  ok_if("math.atan", "two arguments", function()
    return math.atan(1, -1)
  end, approx(3 * math.pi / 4))
  err("math.atan", "nil", function() return math.atan() end, "number expected")
  ok_if("math.deg", "pi", function() return math.deg(math.pi) end, approx(180))
  err("math.deg", "nil", function() return math.deg() end, "number expected")
  ok_if("math.rad", "180", function() return math.rad(180) end, approx(math.pi))
  err("math.rad", "nil", function() return math.rad() end, "number expected")
  ok("math.tointeger", "values", function()
    return math.tointeger(3.0), math.tointeger(3.5), math.tointeger(2 ^ 63), math.tointeger("8"),
           math.tointeger(NAN)
  end, 3, nil, nil, 8, nil)
  err("math.tointeger", "no argument", function() return math.tointeger() end, "value expected")
  ok("math.type", "values", function() return math.type(1), math.type(1.0), math.type("1") end,
     "integer", "float", nil)
  err("math.type", "no argument", function() return math.type() end, "value expected")
  ok("math.ult", "unsigned compare", function()
    return math.ult(1, -1), math.ult(-1, 1)
  end, true, false)
  err("math.ult", "a float", function() return math.ult(1.5, 2) end, "number has no integer")
  ok("math.random", "seeded sequence repeats", function()
    math.randomseed(42)
    local a, b, c = math.random(), math.random(1, 6), math.random(10)
    math.randomseed(42)
    local x, y, z = math.random(), math.random(1, 6), math.random(10)
    return a == x and b == y and c == z, a >= 0 and a < 1, b >= 1 and b <= 6,
           math.type(math.random(0)), math.random(3, 3)
  end, true, true, true, "integer", 3)
  err("math.random", "empty interval", function() return math.random(3, 1) end, "interval is empty")
  err("math.random", "three arguments", function() return math.random(1, 2, 3) end,
      "wrong number of arguments")
  ok_if("math.randomseed", "no argument seeds from the clock", function()
    return math.randomseed()
  end, function(a, b) return math.type(a) == "integer" and math.type(b) == "integer" end)
  err("math.randomseed", "a string", function() return math.randomseed("x") end, "number expected")
  ok("math.huge", "is infinity", function() return math.huge, -math.huge < 0 end, math.huge, true)
  ok("math.pi", "value", function() return math.pi end, 3.141592653589793)
  ok("math.maxinteger", "value", function()
    return math.maxinteger, math.maxinteger + 1 == math.mininteger
  end, 9223372036854775807, true)
  ok("math.mininteger", "value", function() return math.mininteger end, -9223372036854775807 - 1)
  -- Lua 5.3 compatibility functions that Debian's Lua keeps.
  ok("math.atan2", "like atan(y, x)", function()
    return math.atan2(1, 1) == math.atan(1, 1)
  end, true)
  err("math.atan2", "nil", function() return math.atan2() end, "number expected")
  ok_if("math.cosh", "cosh(0)", function() return math.cosh(0) end, approx(1))
  err("math.cosh", "nil", function() return math.cosh() end, "number expected")
  ok_if("math.sinh", "sinh(0)", function() return math.sinh(0) end, approx(0))
  err("math.sinh", "nil", function() return math.sinh() end, "number expected")
  ok_if("math.tanh", "tanh(0)", function() return math.tanh(0) end, approx(0))
  err("math.tanh", "nil", function() return math.tanh() end, "number expected")
  ok("math.frexp", "8", function() return math.frexp(8) end, 0.5, 4)
  err("math.frexp", "nil", function() return math.frexp() end, "number expected")
  ok("math.ldexp", "0.5 * 2^4", function() return math.ldexp(0.5, 4) end, 8.0)
  err("math.ldexp", "a float exponent", function() return math.ldexp(1, 0.5) end,
      "number has no integer")
  ok("math.log10", "1000", function() return math.log10(1000) end, 3.0)
  err("math.log10", "nil", function() return math.log10() end, "number expected")
  ok("math.pow", "2^10", function() return math.pow(2, 10) end, 1024.0)
  err("math.pow", "nil", function() return math.pow() end, "number expected")
end

function G.utf8(msg)
  ok("utf8.char", "code points", function()
    return utf8.char(72, 233, 0x10FFFF), utf8.char(), utf8.char(0x7FFFFFFF)
  end, "H\195\169\244\143\191\191", "", "\253\191\191\191\191\191")
  err("utf8.char", "out of range", function()
    return utf8.char(0x80000000)
  end, "value out of range")
  err("utf8.char", "negative", function() return utf8.char(-1) end, "value out of range")
  ok("utf8.charpattern", "value", function() return utf8.charpattern end,
     "[\0-\x7F\xC2-\xFD][\x80-\xBF]*")
  ok("utf8.codepoint", "ranges", function()
    return utf8.codepoint("h\195\169llo", 1, 3)
  end, 104, 233)
  err("utf8.codepoint", "empty string", function() return utf8.codepoint("") end, "out of bounds")
  err("utf8.codepoint", "invalid UTF-8", function() return utf8.codepoint("\255") end,
      "invalid UTF-8 code")
  err("utf8.codepoint", "out of bounds", function() return utf8.codepoint("abc", 5) end,
      "out of bounds")
  ok("utf8.codes", "iterates", function()
    local t = {}
    for p, c in utf8.codes("a\195\169") do t[#t + 1] = p .. ":" .. c end
    return table.concat(t, " ")
  end, "1:97 2:233")
  err("utf8.codes", "invalid UTF-8", function()
    for _ in utf8.codes("a\255") do end
  end, "invalid UTF-8 code")
  ok("utf8.len", "valid, empty, invalid", function()
    return utf8.len("h\195\169llo"), utf8.len(""), utf8.len("ab\255")
  end, 5, 0, nil, 3)
  ok("utf8.len", "surrogates are invalid unless lax", function()
    return { utf8.len("\237\160\128") }, utf8.len("\237\160\128", 1, -1, true)
  end, { [2] = 1 }, 1)
  err("utf8.len", "initial position out of bounds", function() return utf8.len("abc", 10) end,
      "out of bounds")
  ok("utf8.offset", "positions", function()
    return utf8.offset("h\195\169llo", 3), utf8.offset("a", 5), utf8.offset("h\195\169", -1)
  end, 4, nil, 2)
  err("utf8.offset", "continuation byte", function() return utf8.offset("\195\169", 1, 2) end,
      "continuation byte")
  err("utf8.offset", "no n", function() return utf8.offset("abc") end, "number expected")
end

function G.os(msg)
  ok("os.time", "a date table is UTC", function()
    return os.time { year = 2024, month = 1, day = 1, hour = 0 },
           os.time { year = 2024, month = 1, day = 1 }
  end, 1704067200, 1704110400)
  ok("os.time", "fields are normalized", function()
    return os.time { year = 2024, month = 13, day = 1, hour = 0 },
           os.time { year = 2024, month = 3, day = 0, hour = 0 },
           os.time { year = 1970, month = 1, day = 1, hour = 0, sec = -2 }
  end, 1735689600, 1709164800, -2)
  -- mktime's -1 is also its error value: Lua cannot tell them apart.
  err("os.time", "one second before 1970", function()
    return os.time { year = 1970, month = 1, day = 1, hour = 0, sec = -1 }
  end, "cannot be represented")
  ok_if("os.time", "now", function() return os.time() end, function(t)
    return math.type(t) == "integer" and math.abs(t - msg.received // 1000) < 600
  end)
  ok("os.time", "inverse of os.date('*t')", function()
    return os.time(os.date("*t", 86400))
  end, 86400)
  any("os.time", "isdst = true", function()
    return os.time { year = 2024, month = 1, day = 1, hour = 0, isdst = true }
  end)
  err("os.time", "missing day", function() return os.time { year = 2024, month = 1 } end,
      "field 'day' missing")
  err("os.time", "year out of bounds", function()
    return os.time { year = 2 ^ 31 + 1900, month = 1, day = 1 }
  end, "field 'year' is out-of-bound")
  err("os.time", "non-integer field", function()
    return os.time { year = 1e100, month = 1, day = 1 }
  end, "field 'year' is not an integer")
  err("os.time", "not a table", function() return os.time("2024") end, "table expected")
  ok("os.date", "UTC and local are the same", function()
    return os.date("!%Y-%m-%dT%H:%M:%SZ", 1704067200), os.date("%Y-%m-%d %H:%M:%S", 1704067200),
           os.date("!%Y", 0), os.date("%H", 0)
  end, "2024-01-01T00:00:00Z", "2024-01-01 00:00:00", "1970", "00")
  ok("os.date", "time zone name and offset", function() return os.date("%Z %z", 0) end, "UTC +0000")
  ok("os.date", "*t and !*t", function()
    local t, u = os.date("*t", 0), os.date("!*t", 0)
    return t.year, t.month, t.day, t.hour, t.wday, t.yday, t.isdst, u.hour
  end, 1970, 1, 1, 0, 5, 1, false, 0)
  ok("os.date", "%c in the C locale", function() return os.date("%c", 0) end,
     "Thu Jan  1 00:00:00 1970")
  ok_if("os.date", "no argument", function() return os.date() end,
        function(s) return type(s) == "string" and #s > 10 end)
  ok("os.date", "negative time", function() return os.date("!%Y-%m-%d", -86400) end, "1969-12-31")
  err("os.date", "invalid conversion", function() return os.date("%Ez") end,
      "invalid conversion specifier")
  err("os.date", "time not representable", function() return os.date("%Y", 2 ^ 60) end,
      "cannot be represented")
  err("os.date", "not an integer", function() return os.date("%Y", 1e300) end,
      "number has no integer representation")
  ok_if("os.clock", "CPU seconds", function() return os.clock() end, function(v)
    return math.type(v) == "float" and v >= 0
  end)
end

function G.coroutine(msg)
  ok("coroutine.create", "runs", function()
    local co = coroutine.create(function(a) local b = coroutine.yield(a + 1) return b * 2 end)
    local r1 = table.pack(coroutine.resume(co, 1))
    local r2 = table.pack(coroutine.resume(co, 5))
    local r3 = table.pack(coroutine.resume(co))
    return r1[2], r2[2], r3[1], r3[2]
  end, 2, 10, false, "cannot resume dead coroutine")
  err("coroutine.create", "a number", function()
    return coroutine.create(1)
  end, "function expected")
  ok("coroutine.resume", "error inside", function()
    return coroutine.resume(coroutine.create(function() error("in", 0) end))
  end, false, "in")
  err("coroutine.resume", "not a coroutine", function() return coroutine.resume(1) end,
      "expected")
  ok("coroutine.status", "states", function()
    local co
    co = coroutine.create(function() return coroutine.status(co) end)
    local s1 = coroutine.status(co)
    local _, inside = coroutine.resume(co)
    return s1, inside, coroutine.status(co)
  end, "suspended", "running", "dead")
  err("coroutine.status", "nil", function() return coroutine.status() end, "expected")
  ok("coroutine.wrap", "generator", function()
    local gen = coroutine.wrap(function() for i = 1, 3 do coroutine.yield(i) end end)
    return gen(), gen(), gen()
  end, 1, 2, 3)
  err("coroutine.wrap", "error propagates", function()
    return coroutine.wrap(function() error("w", 0) end)()
  end, "w")
  err("coroutine.wrap", "nil", function() return coroutine.wrap() end, "function expected")
  ok("coroutine.yield", "passes values both ways", function()
    local co = coroutine.wrap(function(...) return coroutine.yield(...) end)
    return { co(1, 2) }, co("back")
  end, { 1, 2 }, "back")
  err("coroutine.yield", "outside a coroutine", function() return coroutine.yield(1) end,
      "outside a coroutine")
  ok("coroutine.running", "main and inside", function()
    local _, main = coroutine.running()
    local inner = coroutine.wrap(function() local _, m = coroutine.running() return m end)()
    return main, inner
  end, true, false)
  ok("coroutine.isyieldable", "main and inside", function()
    return coroutine.isyieldable(), coroutine.wrap(function() return coroutine.isyieldable() end)()
  end, false, true)
end

function G.json(msg)
  ok("json.decode", "every type", function()
    local v = json.decode('{"a":[1,2.5,null,true,"x\\u00e9"],"b":{},"c":1e3,"d":2.0}')
    return v.a[1], v.a[2], v.a[3] == json.null, v.a[4], v.a[5], #v.a, next(v.b), v.c, v.d
  end, 1, 2.5, true, true, "x\195\169", 5, nil, 1000, 2)
  ok("json.decode", "scalars and repeated keys", function()
    return json.decode("1e300"), json.decode('"s"'), json.decode("null") == json.null,
           json.decode('{"k":1,"k":2}').k, json.decode("-0")
  end, 1e300, "s", true, 2, 0)
  -- Numbers are read as doubles, as JavaScript does: integers are exact up
  -- to 2^53, and 2^63 - 1 rounds up to the float 2^63.
  ok("json.decode", "integers at the edges", function()
    return json.decode("9007199254740992"), json.decode("9007199254740993"),
           json.decode("-9223372036854775808"), json.decode("9223372036854775807")
  end, 9007199254740992, 9007199254740992, math.mininteger, 9.2233720368547758e18)
  fail("json.decode", "truncated", function() return json.decode("[1,") end, "")
  fail("json.decode", "empty string", function() return json.decode("") end, "")
  fail("json.decode", "invalid UTF-8", function() return json.decode('"\255"') end, "")
  fail("json.decode", "NaN", function() return json.decode("NaN") end, "")
  fail("json.decode", "trailing comma", function() return json.decode("[1,]") end, "")
  fail("json.decode", "too deep", function()
    return json.decode(("["):rep(40) .. ("]"):rep(40))
  end, "")
  fail("json.decode", "number out of range", function() return json.decode("1e400") end, "")
  fail("json.decode", "over 1 MiB", function()
    return json.decode(("1"):rep(1024 * 1024) .. " ")
  end, "")
  err("json.decode", "nil", function() return json.decode(nil) end, "string expected")
  ok("json.encode", "sorted object, array, scalars", function()
    return json.encode({ b = 1, a = { 1, 2.5, "x", true, json.null } }), json.encode({}),
           json.encode(json.empty_array), json.encode(nil), json.encode("\226\130\172\n")
  end, '{"a":[1,2.5,"x",true,null],"b":1}', "{}", "[]", "null", '"\226\130\172\\n"')
  ok("json.encode", "round trip", function()
    local v = { n = 2 ^ 53, f = -1.5e-300, s = "q\"\\/", l = { { x = 1 }, {} } }
    local s = json.encode(v)
    return json.encode(json.decode(s)) == s, s
  end, true, '{"f":-1.5e-300,"l":[{"x":1},{}],"n":9007199254740992,"s":"q\\"\\\\/"}')
  ok("json.encode", "an object with many keys (sorted)", function()
    local t = {}
    for i = 1, 500 do t[string.format("k%03d", i)] = i end
    local s = json.encode(t)
    return #s, s:sub(1, 15), json.decode(s).k500
  end, 5393, '{"k001":1,"k002', 500)
  fail("json.encode", "mixed keys", function() return json.encode({ 1, 2, x = 3 }) end, "")
  fail("json.encode", "a hole", function() return json.encode({ [1] = 1, [3] = 3 }) end, "")
  fail("json.encode", "boolean key", function() return json.encode({ [true] = 1 }) end, "")
  fail("json.encode", "NaN", function() return json.encode(NAN) end, "")
  fail("json.encode", "infinity", function() return json.encode({ x = math.huge }) end, "")
  fail("json.encode", "invalid UTF-8", function() return json.encode("\255") end, "")
  fail("json.encode", "a function", function() return json.encode(print) end, "")
  fail("json.encode", "a cycle", function()
    local t = {}
    t.t = t
    return json.encode(t)
  end, "")
  fail("json.encode", "too deep", function()
    local t = {}
    for _ = 1, 40 do t = { t } end
    return json.encode(t)
  end, "")
  fail("json.encode", "over 1 MiB", function()
    local t = {}
    for i = 1, 20 do t[i] = ("x"):rep(60000) end
    return json.encode(t)
  end, "")
  ok("json.null", "is a unique userdata", function()
    return type(json.null), json.null == json.empty_array, json.null == json.null
  end, "userdata", false, true)
  ok("json.empty_array", "is a unique userdata", function()
    return type(json.empty_array), json.decode("[]") == json.empty_array
  end, "userdata", false)
end

function G.codec(msg)
  ok("hex.encode", "bytes", function()
    return hex.encode("\0\255a"), hex.encode("")
  end, "00ff61", "")
  err("hex.encode", "nil", function() return hex.encode(nil) end, "string expected")
  ok("hex.decode", "either case", function() return hex.decode("00FFab"), hex.decode("") end,
     "\0\255\171", "")
  fail("hex.decode", "odd length", function() return hex.decode("abc") end, "")
  fail("hex.decode", "not hex", function() return hex.decode("zz") end, "")
  err("hex.decode", "a table", function() return hex.decode({}) end, "string expected")
  ok("base64.encode", "padding", function()
    return base64.encode(""), base64.encode("f"), base64.encode("fo"), base64.encode("foobar"),
           base64.encode("\255\254\253")
  end, "", "Zg==", "Zm8=", "Zm9vYmFy", "//79")
  err("base64.encode", "nil", function() return base64.encode() end, "string expected")
  ok("base64.decode", "standard, URL-safe, no padding", function()
    return base64.decode("Zm9vYmFy"), base64.decode("Zg"), base64.decode("Zg=="),
           base64.decode("__79"), base64.decode("")
  end, "foobar", "f", "f", "\255\254\253", "")
  fail("base64.decode", "a bad character", function() return base64.decode("Zm9v!") end, "")
  fail("base64.decode", "a lone character", function() return base64.decode("Z") end, "")
  fail("base64.decode", "non-canonical trailing bits", function() return base64.decode("QR==") end,
       "non-canonical")
  fail("base64.decode", "both alphabets", function() return base64.decode("+/-_") end,
       "mixes the standard (+/) and URL-safe (-_) alphabets")
  fail("base64.decode", "wrong padding", function() return base64.decode("Zg=") end,
       "bad padding")
  fail("hex.decode", "where the bad digit is", function() return hex.decode("0g") end,
       "invalid character at 2")
  err("base64.decode", "nil", function() return base64.decode() end, "string expected")
  ok("hex and base64", "round trips of every byte", function()
    local all = {}
    for i = 0, 255 do all[#all + 1] = string.char(i) end
    all = table.concat(all)
    return hex.decode(hex.encode(all)) == all, base64.decode(base64.encode(all)) == all
  end, true, true)
end

function G.tagotip(msg)
  ok("tagotip.parse", "a structured body", function()
    return tagotip.parse("[temp:=32#C;humidity:=65#%]")
  end, { { variable = "temp", value = 32, unit = "C" },
         { variable = "humidity", value = 65, unit = "%" } })
  ok("tagotip.parse", "a passthrough body", function() return tagotip.parse(">xDEAD") end,
     { passthrough = "x", data = "\222\173" })
  fail("tagotip.parse", "empty", function() return tagotip.parse("") end, "invalid_payload")
  fail("tagotip.parse", "garbage", function()
    return tagotip.parse("\255\0[")
  end, "invalid_payload")
  fail("tagotip.parse", "over 16 KiB", function() return tagotip.parse(("x"):rep(17000)) end,
       "payload_too_large")
  err("tagotip.parse", "nil", function() return tagotip.parse(nil) end, "string expected")
  ok("tagotip.command", "plain", function()
    return tagotip.command(msg.device.serial, "fan=on", { plain = true })
  end)
  err("tagotip.command", "a space in the command", function()
    return tagotip.command(msg.device.serial, "fan on", { plain = true })
  end, "printable ASCII")
  err("tagotip.command", "a bad serial", function() return tagotip.command("a b", "x") end,
      "a device serial")
  err("tagotip.command", "an unknown option", function()
    return tagotip.command(msg.device.serial, "x", { plain = true, bogus = 1 })
  end, "options are")
end

function G.publish(msg)
  local base = "luaapi-out/" .. msg.device.serial
  ok("publish", "plain", function() return publish(base, "hello") end)
  ok("publish", "options and binary payload", function()
    return publish(base .. "/bin", "\0\255", { qos = 1, retain = false })
  end)
  ok("publish", "empty payload", function() return publish(base .. "/empty", "") end)
  err("publish", "wildcard topic", function() return publish("a/+", "x") end, "wildcards")
  err("publish", "empty topic", function() return publish("", "x") end, "wildcards")
  err("publish", "a $ topic", function() return publish("$SYS/x", "x") end, "leading '$'")
  err("publish", "invalid UTF-8 topic", function() return publish("a/\255", "x") end, "topic")
  err("publish", "payload over the limit", function()
    return publish(base, ("x"):rep(256 * 1024 + 1))
  end, "the limit is")
  err("publish", "qos 3", function() return publish(base, "x", { qos = 3 }) end, "qos must be")
  err("publish", "an unknown option", function() return publish(base, "x", { qoss = 1 }) end,
      "unknown option")
  err("publish", "a non-string payload", function() return publish(base, {}) end, "string expected")
  err("publish", "retain not a boolean", function() return publish(base, "x", { retain = 1 }) end,
      "retain must be")
end

function G.insert(msg)
  ok("insert", "one record for this device", function()
    return insert({ variable = "inserted", value = 7 })
  end)
  ok("insert", "a list, serial given", function()
    return insert({ { variable = "inserted_list", value = "a" },
                    { variable = "inserted_list", value = "b" } }, msg.device.serial)
  end)
  err("insert", "a bad variable", function()
    return insert({ variable = "bad name" })
  end, "variable")
  err("insert", "a bad serial", function()
    return insert({ variable = "x" }, "no such!")
  end, "serial")
  err("insert", "an unknown field", function()
    return insert({ variable = "x", unti = "C" })
  end, "unti")
  err("insert", "not a table", function() return insert("x") end, "")
  return { variable = "insert_done", value = 1 }
end

-- Failures the daemon finds after handle() returns: each fails its whole
-- message (an analysis_error dead letter), as documented.
function G.insert_ghost(msg)
  insert({ variable = "ghost", value = 1 }, "ghost")
end

function G.seal_ghost(msg)
  publish("luaapi-out/" .. msg.device.serial .. "/sealed", "CMD|x", { seal_for = "ghost" })
end

function G.command_nokey(msg)
  tagotip.command(msg.device.serial, "fan=on")
end

function G.seed(msg)
  insert({ { variable = "doomed", value = 1, time = 1000 },
           { variable = "doomed", value = 2, time = 3000 } })
  return { variable = "seed", value = 42, unit = "u", metadata = { k = "v" } }
end

function G.query(msg)
  ok_if("query", "the seeded record", function() return query { variable = "seed" } end,
        function(r)
          return type(r) == "table" and #r == 1 and r[1].value == 42 and r[1].unit == "u" and
                 r[1].metadata.k == "v" and math.type(r[1].time) == "integer"
        end)
  ok_if("query", "every field given", function()
    return query { serial = msg.device.serial, variable = "SEED", qty = 100, start = 0,
                   stop = "2100-01-01T00:00:00Z" }
  end, function(r) return #r == 1 end)
  ok("query", "an empty range", function() return #query { variable = "seed", stop = 1 } end, 0)
  err("query", "qty 0", function() return query { qty = 0 } end, "qty")
  err("query", "qty 101", function() return query { qty = 101 } end, "qty")
  err("query", "an unknown field", function() return query { bogus = 1 } end, "bogus")
  err("query", "start after stop", function() return query { start = 2, stop = 1 } end, "start")
  err("query", "a bad serial", function() return query { serial = "bad serial" } end, "serial")
  err("query", "a bad time", function() return query { start = "not a date" } end, "start")
end

function G.devices(msg)
  ok_if("devices", "every device", function() return devices{} end, function(d)
    return type(d) == "table" and #d == 1 and d[1].serial == msg.device.serial and
           d[1].name == msg.device.name and type(d[1].tags) == "table" and
           type(d[1].params) == "table" and type(d[1].connected) == "boolean" and
           (d[1].last_sent == nil or math.type(d[1].last_sent) == "integer") -- it may lag
  end)
  ok("devices", "after the last one", function()
    return #devices{ after = msg.device.serial, limit = 5 }
  end, 0)
  ok("devices", "a tag nobody has", function() return #devices{ tags = { site = "nowhere" } } end, 0)
  err("devices", "limit 0", function() return devices{ limit = 0 } end, "limit")
  err("devices", "limit 1001", function() return devices{ limit = 1001 } end, "limit")
  err("devices", "a number tag", function() return devices{ tags = { site = 1 } } end, "tags")
  err("devices", "a bad after", function() return devices{ after = "a b" } end, "after")
  err("devices", "an unknown field", function() return devices{ bogus = 1 } end, "bogus")
end

function G.aggregate(msg)
  ok_if("aggregate", "the seeded record", function() return aggregate{ variable = "seed" } end,
        function(g)
          return g.count == 1 and g.min == 42 and g.max == 42 and g.avg == 42 and g.sum == 42 and
                 g.first == 42 and g.last == 42
        end)
  ok("aggregate", "an empty range", function()
    local g = aggregate{ serial = msg.device.serial, variable = "seed", stop = 1 }
    return g.count, g.avg, g.min
  end, 0, nil, nil)
  err("aggregate", "no variable", function() return aggregate{} end, "variable")
  err("aggregate", "start after stop", function()
    return aggregate{ variable = "seed", start = 2, stop = 1 }
  end, "start")
  err("aggregate", "a bad serial", function()
    return aggregate{ variable = "seed", serial = "bad serial" }
  end, "serial")
  err("aggregate", "an unknown field", function() return aggregate{ variable = "x", qty = 1 } end,
      "qty")
end

-- Deletes the seed's old "doomed" record (time 1000), not the newer one.
function G.delete_data(msg)
  ok("delete_data", "one variable's old rows", function()
    return delete_data{ variable = "doomed", before = 2000 }
  end)
  err("delete_data", "no before", function() return delete_data{ variable = "x" } end, "before")
  err("delete_data", "a bad before", function() return delete_data{ before = "soon" } end, "before")
  err("delete_data", "a bad serial", function()
    return delete_data{ serial = "bad serial", before = 1 }
  end, "serial")
  err("delete_data", "an unknown field", function() return delete_data{ before = 1, x = 1 } end,
      "\"x\"")
end

function G.delete_ghost(msg)
  delete_data{ serial = "ghost", before = 1 }
end

-- run_analysis queues this analysis's own run(), which stores nothing.
function G.run_analysis(msg)
  ok("run_analysis", "a table payload", function() return run_analysis("luaapi", { a = 1 }) end)
  ok("run_analysis", "a string payload", function() return run_analysis("luaapi", "x") end)
  err("run_analysis", "a bad name", function() return run_analysis("no such", "x") end, "name")
  err("run_analysis", "a number payload", function() return run_analysis("luaapi", 1) end,
      "string or a table")
  err("run_analysis", "bytes", function() return run_analysis("luaapi", "\xff") end, "UTF-8")
  err("run_analysis", "65537 bytes", function() return run_analysis("luaapi", ("x"):rep(65537)) end,
      "65536")
end

-- webhook() collects requests; the daemon queues them for 127.0.0.1:9 (the
-- discard port: nothing answers, so they wait for their retries harmlessly).
local HOOK = "http://127.0.0.1:9/luaapi"
function G.webhook(msg)
  ok("webhook", "a string body", function() return webhook(HOOK, "x") end)
  ok("webhook", "a table body", function() return webhook(HOOK, { a = 1 }) end)
  ok("webhook", "headers and a method", function()
    return webhook(HOOK, "", { headers = { ["X-Token"] = "t", Accept = "*/*" }, method = "PUT" })
  end)
  err("webhook", "a host not in webhooks", function() return webhook("http://127.0.0.2/", "x") end,
      "add it to `webhooks`")
  err("webhook", "another port", function() return webhook("http://127.0.0.1:10/", "x") end,
      "port 10 of host 127.0.0.1")
  err("webhook", "not http", function() return webhook("ftp://127.0.0.1:9/", "x") end,
      "only http and https")
  err("webhook", "a number body", function() return webhook(HOOK, 1) end, "string or a table")
  err("webhook", "262145 bytes", function() return webhook(HOOK, ("x"):rep(262145)) end,
      "262144")
  err("webhook", "a bad method", function() return webhook(HOOK, "", { method = "TRACE" }) end,
      "method must be")
  err("webhook", "an unknown option", function() return webhook(HOOK, "", { verb = "GET" }) end,
      "unknown option")
  err("webhook", "a Host header", function()
    return webhook(HOOK, "", { headers = { Host = "evil" } })
  end, "set by the sender")
  err("webhook", "a CR in a value", function()
    return webhook(HOOK, "", { headers = { ["X-A"] = "a\r\nX-B: b" } })
  end, "X-A")
  err("webhook", "a NUL in a value", function()
    return webhook(HOOK, "", { headers = { ["X-A"] = "a\0b" } })
  end, "NUL")
  err("webhook", "a number value", function()
    return webhook(HOOK, "", { headers = { ["X-A"] = 1 } })
  end, "names to strings")
  err("webhook", "an 11th call", function()
    for _ = 1, 11 do webhook(HOOK, "x") end
  end, "more than 10 calls")
end

function G.log(msg)
  ok("log", "any values on one line", function()
    return log("luaapi-marker", 1, 2.5, nil, true, json.null, "a\nb\255")
  end)
  ok("print", "is log", function() return print == log, print("luaapi-print") end, true)
  ok("log", "no arguments", function() return log() end)
end

function G.env(msg)
  ok("env", "the sidecar's variables", function()
    return env.THRESHOLD, env.MISSING, type(env)
  end, "35", nil, "table")
end

-- Everything the environment holds: global names, and name.member for
-- library tables (env's contents are data, not API).
function G.toplevel(msg)
  err("publish", "at the top level", function() return replay(TOP.publish) end,
      "only available while a handler runs")
  err("insert", "at the top level", function() return replay(TOP.insert) end,
      "only available while a handler runs")
  err("query", "at the top level", function() return replay(TOP.query) end,
      "only available while a handler runs")
  err("tagotip.command", "at the top level", function() return replay(TOP.command) end,
      "only available while a handler runs")
  err("webhook", "at the top level", function() return replay(TOP.webhook) end,
      "only available while a handler runs")
  ok("env", "at the top level", function() return TOP.env end, "35")
  ok("publish", "from a coroutine", function()
    return coroutine.wrap(function()
      return publish("luaapi-out/" .. msg.device.serial .. "/co", "from a coroutine")
    end)()
  end)
  ok("query", "from a coroutine", function()
    return coroutine.wrap(function() return #query { variable = "seed" } end)()
  end, 1)
end

function G.inventory(msg)
  local names = {}
  for k, v in pairs(_ENV) do
    names[#names + 1] = k
    if type(v) == "table" and k ~= "env" then
      for m in pairs(v) do
        names[#names + 1] = k .. "." .. m
      end
    end
  end
  table.sort(names)
  return { variable = "inventory", value = table.concat(names, " ") }
end

return {
  topics = { "luaapi/{serial}/+" },
  webhooks = { "127.0.0.1:9" },
  handle = function(msg)
    local group = msg.topic:match("([^/]+)$")
    local fn = G[group]
    if not fn then
      error("no such group: " .. group)
    end
    cases = {}
    local extra = fn(msg)
    local out = {}
    for _, c in ipairs(cases) do
      out[#out + 1] = run_case(c)
    end
    out[#out + 1] = { variable = "group_done", value = group }
    if extra then
      out[#out + 1] = extra
    end
    return out
  end,
  run = function(ctx) end,
}

-- Hostile test analysis: a huge return value
return {
  topics = { "h/huge/{serial}" },
  handle = function(msg)
    local t = {}
    for i = 1, 100000 do t[i] = { variable = "v" .. i, value = i } end
    return t
  end,
}

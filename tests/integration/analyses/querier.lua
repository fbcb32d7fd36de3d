-- Test analysis: query() the bucket for this device's latest "orig" values.
return {
  topics = { "qry/{serial}" },
  handle = function(msg)
    local r = query({ variable = "orig", qty = 5 })
    local latest = r[1] and tostring(r[1].value) or "none"
    return { variable = "found", value = #r, metadata = { latest = latest } }
  end,
}

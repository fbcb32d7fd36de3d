-- Hostile test analysis: opening a file or a socket
return {
  topics = { "h/io/{serial}" },
  handle = function(msg)
    local f = io.open("/etc/passwd")
    return { variable = "f", value = f:read("a") }
  end,
}

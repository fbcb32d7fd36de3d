-- Hostile test analysis: running a process
return {
  topics = { "h/exec/{serial}" },
  handle = function(msg)
    os.execute("touch /tmp/sealpipe-pwned")
    return { variable = "e", value = 1 }
  end,
}

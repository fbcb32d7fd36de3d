-- Hostile test analysis: the control: a well-behaved analysis using string methods
return {
  topics = { "h/good/{serial}" },
  handle = function(msg)
    return { variable = "good", value = ("%s"):format(msg.payload):upper() }
  end,
}

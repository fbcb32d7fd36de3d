"""The analyses folder: overlapping filters, $ topics and links (issue #10.7, #10.9).

A message runs exactly one analysis, so filters of two analyses may not
overlap: files load in name order and a later one whose filters overlap a
loaded one is refused with an error naming both (it loads once the other
goes). $ topics belong to the broker and the daemon. Links in the folder are
refused: a NAME.env linked to another analysis's secrets, or a NAME.lua
linked to a file only root may read, never reach the sandbox or the log.
"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
import harness as h  # noqa: E402


def decl(topics, var):
    ts = ", ".join(f'"{t}"' for t in topics)
    return (f'return {{ topics = {{ {ts} }},\n'
            f'  handle = function(msg) return {{ variable = "{var}", value = msg.payload }} end }}\n')


def test(c, tmp, started):
    a = os.path.join(tmp, "analyses")
    os.makedirs(a)
    outside = os.path.join(tmp, "outside")
    os.makedirs(outside)

    def put(name, text):
        with open(os.path.join(a, name), "w") as f:
            f.write(text)

    put("a_all.lua", decl(["things/#"], "all"))
    put("b_part.lua", decl(["things/{serial}/part"], "part"))
    put("c_sys.lua", decl(["$SYS/#"], "sys"))
    put("d_ack.lua", decl(["$tip/+/ack"], "ack"))
    put("e_secret.lua", decl(["e/{serial}"], "e"))
    put("e_secret.env", "API_KEY=SECRET-OF-E-123\n")
    put("f_env.lua", 'local k = env.API_KEY\nreturn { topics = { "f/{serial}" },\n'
        '  handle = function(msg) return { variable = "leak", value = tostring(k) } end }\n')
    os.symlink(os.path.join(a, "e_secret.env"), os.path.join(a, "f_env.env"))
    with open(os.path.join(outside, "root-only.txt"), "w") as f:
        f.write("ROOT-ONLY-CONTENT-XYZ is not lua\n")
    os.chmod(os.path.join(outside, "root-only.txt"), 0o600)
    os.symlink(os.path.join(outside, "root-only.txt"), os.path.join(a, "g_link.lua"))
    os.mkfifo(os.path.join(a, "h_fifo.lua"))
    put("j_hard.lua", decl(["j/{serial}"], "j"))
    os.link(os.path.join(a, "e_secret.env"), os.path.join(a, "j_hard.env"))
    os.mkdir(os.path.join(a, "i_dir.lua"))

    sp = h.Sealpipe(tmp, analyses=a)
    dev = sp.add_device("dev-01", "--cipher", "none")
    sp.start()
    started.append(sp)
    log = sp.read_log()
    loaded = [ln for ln in log.splitlines() if "analysis loaded" in ln]
    c.check(any("name=a_all" in ln for ln in loaded), "a_all loads")
    c.check(not any("name=b_part" in ln for ln in loaded), "b_part, which overlaps it, does not")
    c.check(any("b_part.lua" in ln and "a_all.lua" in ln and "things/#" in ln
                for ln in log.splitlines()), "the error names both files and the filter")
    for name in ("c_sys", "d_ack"):
        c.check(any(f"name={name}" in ln and "$ topic" in ln for ln in log.splitlines()),
                f"{name}: a $ topic is refused at load")
    c.check(any("f_env" in ln and "symbolic link" in ln for ln in log.splitlines()),
            "a NAME.env link is refused with a clear error")
    c.check(any("g_link.lua" in ln and "symbolic link" in ln for ln in log.splitlines()),
            "a NAME.lua link is refused with a clear error")
    c.check(any("j_hard.env" in ln and "hard links" in ln for ln in log.splitlines()),
            "a NAME.env hard-linked to another analysis's is refused")
    c.check(any("e_secret.env" in ln and "hard links" in ln for ln in log.splitlines()),
            "... and so is the original, which now has two names")
    for name in ("h_fifo.lua", "i_dir.lua"):
        c.check(any(name in ln and "not a regular file" in ln for ln in log.splitlines()),
                f"{name} (not a regular file) is refused with a clear error")
    c.check("ROOT-ONLY-CONTENT-XYZ" not in log, "the linked file's content is not in the log")
    c.check("SECRET-OF-E-123" not in log, "nor the other analysis's secret")

    def pub(topic, payload):
        r = h.subprocess.run(["mosquitto_pub", "-p", str(sp.port), "-h", "127.0.0.1", "-q", "1",
                              "-u", "Token", "-P", dev["token"], "-t", topic, "-m", payload],
                             capture_output=True)
        c.eq(r.returncode, 0, f"publish {topic}")

    pub("things/dev-01/part", "p1")
    pub("f/dev-01", "x")
    pub("$tip/dev-01/push", "[t=1]")
    h.wait_for(lambda: sp.count("SELECT count(*) n FROM data WHERE variable IN ('all','t')") >= 2,
               what="records")
    time.sleep(0.5)
    c.eq(sp.rows("SELECT variable, value FROM data WHERE variable IN ('all','part') "
                 "ORDER BY id"), [{"variable": "all", "value": "p1"}],
         "the message ran one analysis, the one that loaded")
    c.eq(sp.count("SELECT count(*) n FROM data WHERE variable='leak'"), 0,
         "the analysis with a linked env never ran")
    c.eq(sp.count("SELECT count(*) n FROM dead_letters WHERE topic LIKE '$tip/%'"), 0,
         "the daemon's own answers are not dead-lettered")

    # Once a_all is gone, b_part loads (a refused analysis is retried).
    os.remove(os.path.join(a, "a_all.lua"))
    h.wait_for(lambda: "analysis loaded name=b_part" in sp.read_log(), timeout=10,
               what="b_part loads after a_all left")
    c.check(True, "b_part loads once the overlapping analysis is removed")
    h.wait_for(lambda: "subscribe filter=things/+/part" in sp.read_log(), timeout=5,
               what="subscribed to b_part's filter")
    time.sleep(0.3)
    pub("things/dev-01/part", "p2")
    h.wait_for(lambda: sp.count("SELECT count(*) n FROM data WHERE variable='part'") >= 1,
               what="b_part's record")
    c.eq(sp.rows("SELECT value FROM data WHERE variable='part'"), [{"value": "p2"}],
         "and takes its traffic")


if __name__ == "__main__":
    sys.exit(h.run(test))

"""A record the database refuses (here a user's trigger; in general anything
that gets past validation) costs only its own message: the batch is run again
message by message, the refused one becomes a dead letter, the rest of the
batch is stored once, and the daemon does not stall on redelivery."""

import os
import sqlite3
import sys

sys.path.insert(0, os.path.dirname(__file__))
import harness as h  # noqa: E402

ANALYSES = os.path.join(os.path.dirname(__file__), "analyses")


def test(c, tmp, started):
    sp = h.Sealpipe(tmp, analyses=ANALYSES, extra=["--stats-interval", "1"])
    sp.add_device("ref-01", "--cipher", "none")
    sp.start()
    started.append(sp)
    con = sqlite3.connect(os.path.join(sp.data, "sealpipe.db"))
    con.execute("CREATE TRIGGER poison BEFORE INSERT ON data WHEN NEW.variable = 'poison' "
                "BEGIN SELECT RAISE(ABORT, 'poison refused'); END")
    con.commit()
    con.close()

    cl = sp.client(sp.creds("ref-01"), client_id="refused-pub")
    cl.connect("127.0.0.1", sp.port)
    cl.loop_start()
    infos = []
    for i in range(200):  # one burst, so the poison shares batches with good messages
        var = "poison" if i in (50, 150) else "good"
        infos.append(cl.publish("devices/ref-01/data",
                                b'{"variable":"%s","value":%d}' % (var.encode(), i), qos=1))
    for info in infos:
        info.wait_for_publish(10)
    cl.loop_stop()
    cl.disconnect()

    h.wait_for(lambda: sp.count("SELECT count(*) n FROM data") +
               sp.count("SELECT count(*) n FROM dead_letters") >= 200, timeout=20,
               what="200 messages handled")
    good = sorted(r["value"] for r in sp.rows("SELECT value FROM data WHERE variable='good'"))
    c.eq(good, [i for i in range(200) if i not in (50, 150)], "every good message stored once")
    dead = sp.rows("SELECT reason, detail, payload FROM dead_letters ORDER BY id")
    c.eq([(d["reason"], bytes(d["payload"])) for d in dead],
         [("invalid_body", b'{"variable":"poison","value":50}'),
          ("invalid_body", b'{"variable":"poison","value":150}')],
         "each refused message is a dead letter with its bytes")
    c.check(all("poison refused" in d["detail"] for d in dead),
            f"the detail carries the database's reason: {dead[0]['detail'] if dead else None}")
    c.check("message by message" in sp.read_log(), "the careful retry is logged")
    c.check(sp.proc.poll() is None, "daemon still running")
    sp.pub("devices/ref-01/data", b'{"variable":"after","value":1}', creds=sp.creds("ref-01"))
    h.wait_for(lambda: sp.count("SELECT count(*) n FROM data WHERE variable='after'") >= 1,
               what="a later message")
    c.eq(sp.count("SELECT count(*) n FROM data WHERE variable='after'"), 1,
         "a later message still arrives, once")


if __name__ == "__main__":
    sys.exit(h.run(test))

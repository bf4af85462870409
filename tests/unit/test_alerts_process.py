"""The worker judges its alert rules in a process of its own (`streams.alerting.AlertsProcess`):
what it sends, stores and counts must be what judging them in the worker's own process
(`WorkerAlerts`) gives, answer for answer."""

import msgspec
import pytest

from cspulse.core import Params, Pipeline
from cspulse.simulate import Simulator
from rules.load import DEFAULT_RULES, load_rules
from streams.alerting import AlertsProcess, WorkerAlerts, _Tally
from streams.topics import key_hash


def _pipeline(params: Params) -> Pipeline:
    pl = Pipeline(params)
    pl.collect_notes()
    return pl


def test_alerts_judged_in_a_process_of_their_own_are_those_judged_in_the_worker():
    rules = load_rules(DEFAULT_RULES)
    params = Params(wait_checks_s=rules.wait_checks_s)
    here, there = WorkerAlerts(rules, params, _Tally()), AlertsProcess(rules, params, _Tally())
    mine, theirs = {0: _pipeline(params)}, {0: _pipeline(params)}
    lines = list(Simulator(agents=3, days=2, seed=5, conversations_per_agent_day=60).lines())
    sent = {"here": [], "there": []}
    stored = {"here": {}, "there": {}}
    try:
        for i in range(0, len(lines), 500):
            for line in lines[i:i + 500]:
                mine[0].feed_line(line)
                theirs[0].feed_line(line)
            now = mine[0].max_ts
            here.step(mine, mine[0].book, now)
            there.step(theirs, theirs[0].book, now)
            if i % 2000 == 0:        # the store takes what changed now and then; the rest waits
                for name, side, wait in (("here", here, False), ("there", there, True)):
                    alerts, retracted = side.take_unstored(wait=wait)
                    stored[name].update((a.key, a.as_record()) for a in alerts)
                    for key in retracted:
                        stored[name].pop(key, None)
        there.take_answers(wait=True)
        for name, side in (("here", here), ("there", there)):
            sent[name] = [msgspec.json.decode(value) for _, value, _ in side.outgoing]
            # each alert's key comes hashed as Kafka's partitioner hashes it (made in the rules process there)
            assert all(hashed == key_hash(key) for key, _, hashed in side.outgoing)
            alerts, retracted = side.take_unstored(wait=True)
            stored[name].update((a.key, a.as_record()) for a in alerts)
        assert len(sent["here"]) > 100 and {a["rule"] for a in sent["here"]} >= {"slow_response", "customer_waiting"}
        assert sent["there"] == sent["here"]
        assert stored["there"] == stored["here"]
        assert dict(there.metrics.fired) == dict(here.metrics.fired) and sum(here.metrics.fired.values()) > 50
        assert there.metrics.firing.counts == here.metrics.firing.counts
    finally:
        there.close()
    assert not there._proc.is_alive()


def test_a_rules_process_that_died_stops_the_worker_s_next_request():
    """The worker then stops (`read_inputs` crashes the app) and restarts from its last commit."""
    rules = load_rules(DEFAULT_RULES)
    there = AlertsProcess(rules, Params(wait_checks_s=rules.wait_checks_s), _Tally())
    there.step({}, None, 0)
    there.take_answers(wait=True)
    there._proc.kill()
    there._proc.join()
    with pytest.raises(EOFError):       # the pipe turned readable with nothing asked: its end
        there.answers_came()
    with pytest.raises((BrokenPipeError, ConnectionResetError, EOFError)):
        for _ in range(3):          # (a send may still go into the pipe's buffer once)
            there.step({}, None, 0)
            there.take_answers(wait=True)

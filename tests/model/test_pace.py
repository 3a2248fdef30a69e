"""A compare run's progress: pair records done and the time left at the run's pace."""

import pytest

from steadyrank.model.evaluation.pace import Pace, duration_text


@pytest.mark.parametrize(("seconds", "text"), [
    (0, "0 s"), (59.4, "59 s"), (60, "1 min"), (90, "2 min"), (3599, "1 h 00 min"),
    (3 * 3600 + 5 * 60, "3 h 05 min"), (26 * 3600, "26 h 00 min")])
def test_durations_read_as_a_person_reads_a_wait(seconds, text):
    assert duration_text(seconds) == text


def test_a_negative_duration_is_refused():
    with pytest.raises(ValueError, match="-1"):
        duration_text(-1)


def test_the_time_left_is_the_trained_pairs_pace_times_the_trainings_left():
    pace = Pace([1, 1, 4, 4])  # two single models, then two 4-model ensembles
    assert pace.finished(1, 10.0, trained=1) == \
        "1/4 pair records, about 2 min left at this run's pace"  # 9 trainings x 10 s
    # A record read from an earlier run costs nothing and does not set the pace.
    assert pace.finished(1, 0.01, trained=0, reused=True) == \
        "2/4 pair records (1 from earlier runs), about 1 min left at this run's pace"  # 8 x 10
    # 210 s over 5 trainings: 42 s each, 4 left.
    assert pace.finished(4, 200.0, trained=4) == \
        "3/4 pair records (1 from earlier runs), about 3 min left at this run's pace"
    assert pace.finished(4, 170.0, trained=4) == "4/4 pair records (1 from earlier runs)"
    with pytest.raises(ValueError, match="already counted"):
        pace.finished(1, 1.0, trained=1)


def test_no_time_is_guessed_before_a_pair_has_trained():
    pace = Pace([1, 1, 1])
    assert pace.finished(1, 0.0, trained=0, reused=True) == "1/3 pair records (1 from earlier runs)"
    # Measured on exports a killed run left: quick, and no guide to the pairs still to train.
    assert pace.finished(1, 5.0, trained=0) == "2/3 pair records (1 from earlier runs)"


def test_pair_weights_must_be_whole_trainings():
    with pytest.raises(ValueError, match="weights must be >= 1"):
        Pace([1, 0])


def test_a_pair_that_trained_only_one_replica_sets_the_pace_per_model_trained():
    """After a restart a pair may find replica A cached and train B alone: the pace is per
    model trained, so such a pair does not make the run look twice as fast."""
    pace = Pace([2, 2, 8, 8])  # two single-model pairs, then two 4-model ensemble pairs
    # 60 s for B alone (A was cached): 60 s a model, 2 + 8 + 8 models planned after it.
    assert pace.finished(2, 60.0, trained=1) == \
        "1/4 pair records, about 18 min left at this run's pace"
    # A whole pair at 40 s a model: 180 s over 3 models is still 60 s a model.
    assert pace.finished(2, 120.0, trained=2) == \
        "2/4 pair records, about 16 min left at this run's pace"


@pytest.mark.parametrize(("trained", "reused", "message"), [
    (-1, False, "cannot have trained -1 models"),
    (1, True, "read from its record cannot have trained 1 models")])
def test_the_models_trained_must_be_possible(trained, reused, message):
    with pytest.raises(ValueError, match=message):
        Pace([2]).finished(2, 1.0, trained=trained, reused=reused)


def test_a_pair_plans_both_replicas_only_for_the_first_table_sharing_replica_a():
    """Under `--vary all,order` replica A of pair p is the same model in both tables: the
    order table's pair trains B alone. Ensembles train K models a replica."""
    from steadyrank.model.config import from_dict
    from steadyrank.model.evaluation import compare

    relu, ensemble = compare.parse_variants("relu,relu-ensemble:4")
    sync, ps = from_dict({}), from_dict({"train": {"strategy": "parameter-server"}})
    vary = ["all", "order"]
    assert [compare._trainings(relu, sync, vary, s) for s in vary] == [2, 1]
    assert [compare._trainings(ensemble, sync, vary, s) for s in vary] == [8, 4]
    # Parameter servers (which `--vary async` needs) train nothing reproducibly: no sharing.
    assert [compare._trainings(relu, ps, vary, s) for s in vary] == [2, 2]
    assert [compare._trainings(relu, ps, ["async", "all"], s) for s in ("async", "all")] == [2, 2]

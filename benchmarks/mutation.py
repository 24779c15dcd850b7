"""Mutation testing of the modules that make decisions, each against its own targeted fast tests.

    nice -n 10 python benchmarks/mutation.py                 # every module in MODULES
    nice -n 10 python benchmarks/mutation.py scoring voting  # some of them
    python benchmarks/mutation.py --sample 120 --seed 1 statistics

Uses mutmut (the ``dev`` extra). mutmut wants the package under ``src/``, so for each module a
scratch project is laid out in a temporary folder (``src/avengers`` a copy of
``shared/avengers``, ``tests`` a copy of the tests, a ``pyproject.toml`` naming the file to
mutate and the tests to run); nothing in the work tree is changed. mutmut runs, for each mutant,
only the selected tests that execute the mutated function (it records which do in a first, clean
run). ``functions`` limits a module to some of its functions (``skip`` leaves some out);
``--sample N`` draws N of a module's mutants with ``--seed`` (for a slow module on a small
machine). Prints killed / survived / equivalent / other per module; the killed share is of the
non-equivalent mutants. Mutants judged equivalent (no test can tell them apart from the original)
are listed in EQUIVALENT with the reason; their names carry mutmut's numbering, so they must be
checked again when the module changes.

When a module moves, change its ``path`` in MODULES and the module part of its names in
EQUIVALENT (``avengers.answering.voting.x_vote__mutmut_27``).
"""

from __future__ import annotations

import argparse
import fnmatch
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Target:
    path: str
    """The file to mutate, relative to ``shared/avengers``."""
    tests: tuple[str, ...]
    """Test files (or node ids) run against its mutants."""
    functions: tuple[str, ...] = ()
    """Globs on mutmut's mangled function names (``x_name`` for functions, ``xǁClassǁname`` for
    methods) limiting which mutants count; empty: all."""
    skip: tuple[str, ...] = ()
    """Globs (as ``functions``) of functions left out: code no caller reaches (say so in the docs)."""
    pytest_args: tuple[str, ...] = ()
    """Extra pytest arguments for this module's runs (e.g. ``-k`` to leave out slow tests)."""


BITE = "tests/test_decisions_bite.py"
# the tests of BITE that load the embedding model (a few seconds in every mutant's run): left out
# where the module's own tests do not need them
NO_MODEL = (
    "-k",
    "not test_a_rating_of_0_3 and not test_a_zero_rating and not test_ratings_on_a_router "
    "and not test_cluster_scores_honour",
)

MODULES: dict[str, Target] = {
    "scoring": Target(
        "routing/scoring.py", (BITE, "tests/test_scoring_bite.py"), pytest_args=NO_MODEL
    ),
    # the router's estimate (``Router.estimate`` and what it reads), since the split of router.py
    "estimate": Target(
        "routing/estimate.py", ("tests/test_estimate_bite.py", "tests/test_online_bite.py")
    ),
    "statistics": Target(
        "routing/statistics.py",
        (
            "tests/test_estimate_bite.py",
            "tests/test_online_bite.py",
            "tests/test_statistics_bite.py",
        ),
        # not called anywhere in the package (online.task_means does the work of the second)
        skip=("xǁClusterStatisticsǁstate", "xǁClusterStatisticsǁtask_means"),
    ),
    "knn": Target("routing/knn.py", ("tests/test_estimate_bite.py", "tests/test_online_bite.py")),
    "voting": Target(
        "answering/voting.py",
        (BITE, "tests/test_voting.py", "tests/test_voting_bite.py"),
        pytest_args=NO_MODEL,
    ),
    "tally": Target(
        "answering/tally.py", ("tests/test_voting_bite.py", "tests/test_tally_bite.py")
    ),
    "online": Target("online.py", ("tests/test_online_bite.py", "tests/test_estimate_bite.py")),
    "feedback": Target(
        "stores/feedback.py",
        (BITE, "tests/test_online_bite.py", "tests/test_feedback_bite.py"),
        functions=("x_check_rating", "x_apply_rating", "xǁMemoryFeedbackStoreǁ*"),
        pytest_args=NO_MODEL,
    ),
    "retry": Target("transport/retry.py", (BITE,), pytest_args=NO_MODEL),
    "breaker": Target(
        "transport/breaker.py", (BITE,), functions=("xǁCircuitBreakerǁ*",), pytest_args=NO_MODEL
    ),
    "deadline": Target("transport/deadline.py", (BITE,), pytest_args=NO_MODEL),
    "conversations": Target(
        "stores/conversations.py",
        ("tests/test_conversations_bite.py",),
        functions=(
            "x_check_key",
            "x__check_bounds",
            "xǁMemoryConversationsǁ*",
            "xǁSQLiteConversationsǁ*",
        ),
    ),
    # the SQLite connection the conversation (and feedback) stores share: its mode and pragmas
    "sqlite": Target(
        "stores/feedback.py",
        ("tests/test_conversations_bite.py",),
        functions=("xǁSQLiteFileǁ_connect",),
    ),
    # the test of the warning's stacklevel cannot pass under mutmut, whose trampolines add
    # frames: it runs in the fast suite only, and the two stacklevel mutants count as survivors
    "calibration": Target(
        "training/calibration.py",
        ("tests/test_calibration_bite.py",),
        pytest_args=("-k", "not test_the_warning_points_at_the_callers_line"),
    ),
}

EINSUM = "einsum subscripts in upper case: NumPy takes either case as labels"
ZIP_EQUAL = "`strict=True` dropped from a zip of two sequences made with the same length"
WIDTH_0 = (
    "the width-0 branch dropped or narrowed: 1 - excess / 0 is -inf for excess > 0, clipped to "
    "the same zeros (a NumPy divide warning aside)"
)
CLIP_TOP = "the clip's upper bound changed: 1 - excess / width is below 1 when excess > 0"
ERRSTATE = "an np.errstate argument dropped: NumPy then warns instead of staying quiet, same values"
UNUSED_CAST = (
    "an array cast made where the original leaves None: it is read only where the parts it "
    "comes from are checked first (classifiers fitted, kNN rows kept), which raise as before"
)

PAIRED = (
    "`or`/`and` (or an assert) on arrays that come in pairs (cost sums and counts, global costs; "
    "task sums and counts): fit, update, add_model and loading a saved router set both or "
    "neither; only a hand-edited artifact holding one without the other tells them apart"
)
PAIRED_KNN = (
    "`or`/`and` on the kNN rows' embeddings and outcomes: fit keeps both or neither and loading "
    "keeps what was saved; only a hand-edited artifact holding one without the other tells them "
    "apart"
)
BOOL_MASK = "the added-model mask cast to bool: online.added_mask hands it out as bool already"

SQL_CASE = "an SQL statement in other letter case: SQLite keywords and names ignore case"
MIN_START = (
    "the minimum's initial value moved within its side of the bound (0 or 1 for 0 before `< 0`, "
    "2 for 1 before `<= 0`): it cannot change which side the minimum falls on"
)
FITTED_ATTR = (
    "getattr without its default on an attribute every fitted router has (tasks_ and "
    "global_costs_, None when not learned; labels_, empty after loading); only fitted routers "
    "get here"
)
NO_PICKS = (
    "the 'no exploration pick' array without dtype=int64 or filled with -2: -1 makes int64 "
    "anyway, and decisions only ask whether a pick is >= 0"
)
NO_DIVIDE = (
    "np.errstate's divide argument dropped: only 0/0 happens there (an empty cell without "
    "pseudo-observations, a row of ties), which is `invalid`, never x/0 with x != 0"
)
ALPHA_1 = (
    "the alpha-1 shortcut not taken at alpha 1: the general formula gives 1 * p + 0 * (1 - c), "
    "the same p (costs are finite)"
)
COEF_CAST = (
    "the classifier coefficients kept in float32: logistic.success_probabilities casts them to "
    "float64 itself, so the probabilities are the same to the bit"
)
NO_DECAY = (
    "the no-forgetting shortcut's test moved (a default decay of 2, `> 1`, `>= 2`): decay 1 then "
    "takes the per-observation loop, which multiplies by 1.0 and adds in the same order, the "
    "same sums; decays above 1 are never passed (decay_factor gives (0, 1])"
)
AS_GIVEN = (
    "accumulate's values or weights without their float64 cast: callers pass float64 arrays "
    "(the outcome tables, checked weights), and numbers times the float weights are the same"
)
GIVEN_VECTORS = (
    "the given embeddings not cast to float32: the router's fit and estimate cast them the same"
)
PICKED_FLOATS = (
    "the picked-share table as floats instead of bools: it holds 0 and 1 and is read as floats"
)
UNKNOWN_COST = (
    "the unknown-measure branch changed (NaN, a bad float string, 'INF'): never taken, as an "
    "alpha's mean cost is NaN only when no held-out row's cost is known, which needs every "
    "fold router fitted without costs (one fitted with some estimates every model's, 0 where "
    "it saw none), i.e. data without any cost, which a cost target refuses first"
)
FLOAT64_MEANS = (
    "the global means cast to float64: they are float64 arrays already (fit, update, load)"
)

EQUIVALENT: dict[str, str] = {
    "avengers.transport.deadline.xǁDeadlineǁ__init____mutmut_6": (
        "`seconds >= 0` for `seconds > 0` after `seconds and`: 0 is already falsy"
    ),
    "avengers.stores.conversations.xǁSQLiteConversationsǁ__len____mutmut_7": SQL_CASE,
    "avengers.stores.conversations.xǁSQLiteConversationsǁ__len____mutmut_8": SQL_CASE,
    "avengers.stores.conversations.xǁSQLiteConversationsǁ_prune__mutmut_6": SQL_CASE,
    "avengers.stores.conversations.xǁSQLiteConversationsǁ_prune__mutmut_7": SQL_CASE,
    "avengers.stores.conversations.xǁSQLiteConversationsǁ_prune__mutmut_14": SQL_CASE,
    "avengers.stores.conversations.xǁSQLiteConversationsǁ_prune__mutmut_15": SQL_CASE,
    "avengers.stores.conversations.xǁSQLiteConversationsǁ_prune__mutmut_17": SQL_CASE,
    "avengers.stores.conversations.xǁSQLiteConversationsǁ_prune__mutmut_18": SQL_CASE,
    "avengers.stores.conversations.xǁSQLiteConversationsǁget__mutmut_12": SQL_CASE,
    "avengers.stores.conversations.xǁSQLiteConversationsǁget__mutmut_13": SQL_CASE,
    "avengers.stores.conversations.xǁSQLiteConversationsǁset__mutmut_10": SQL_CASE,
    "avengers.stores.conversations.xǁSQLiteConversationsǁset__mutmut_11": SQL_CASE,
    "avengers.stores.conversations.xǁMemoryConversationsǁset__mutmut_6": (
        "OrderedDict.popitem(last=None) for last=False: None is false, the oldest goes either way"
    ),
    "avengers.answering.tally.x_count__mutmut_22": (
        "`VoteResult(None, 0, {}, 0)` without its last argument: n_abstained defaults to 0"
    ),
    "avengers.online.x__as_batch__mutmut_37": (
        "`reshape(-2)` for `reshape(-1)`: NumPy reads any negative size as 'the rest'"
    ),
    "avengers.answering.voting.x__canonical_number__mutmut_32": (
        "`rstrip('XX%XX')` for `rstrip('%')`: a token the number pattern matched holds no X"
    ),
    "avengers.answering.voting.x__canonical_number__mutmut_33": (
        "`'XX/XX' in t` (never true) sends 'a/b' to Fraction(t), which parses an integer "
        "fraction exactly like the split, and raises the same errors (ValueError, ZeroDivision)"
    ),
    "avengers.answering.voting.x_medoid__mutmut_34": (
        "a zero norm replaced by 2.0 instead of 1.0: it only divides a zero row, which stays zero"
    ),
    "avengers.answering.voting.x_vote__mutmut_27": (
        "`<=` for `<` when keeping an answer's best rank: an equal rank stores the same value"
    ),
    "avengers.answering.voting.x_vote__mutmut_57": (
        "the tie-break block entered with one leader: its best rank is its own, nothing changes"
    ),
    "avengers.answering.voting.x_vote__mutmut_63": (
        "`<=` for `<` on len(by_rank) vs len(leaders): when they are equal there are at least two "
        "leaders of one rank, and the next line overwrites the label with 'earliest answer'"
    ),
    "avengers.answering.voting.x_vote_equivalence__mutmut_20": (
        "ballots without their order (all 0): ties then keep the answers' first-appearance order, "
        "which is the index order the original sorts by; earlier ballots still win equal ranks"
    ),
    "avengers.transport.retry.x_retry_after__mutmut_20": (
        "the header name in upper case: response headers (httpx.Headers) ignore case"
    ),
    "avengers.transport.retry.x_retry_after__mutmut_33": (
        "the header name in upper case: response headers (httpx.Headers) ignore case"
    ),
    "avengers.stores.feedback.x_apply_rating__mutmut_8": (
        "a rating's cost passed on to a router that keeps no costs: Router.update ignores costs "
        "when cost_sums_ is None (checked: same state)"
    ),
    "avengers.stores.feedback.xǁMemoryFeedbackStoreǁrate__mutmut_18": (
        "a response's rating count raised by 2 instead of 1: the count is only compared with 0"
    ),
    "avengers.stores.feedback.xǁSQLiteFileǁ_connect__mutmut_18": SQL_CASE,
    "avengers.stores.feedback.xǁSQLiteFileǁ_connect__mutmut_19": SQL_CASE,
    "avengers.stores.feedback.xǁSQLiteFileǁ_connect__mutmut_22": SQL_CASE,
    "avengers.stores.feedback.xǁSQLiteFileǁ_connect__mutmut_23": SQL_CASE,
    "avengers.stores.feedback.xǁSQLiteFileǁ_connect__mutmut_26": SQL_CASE,
    "avengers.stores.feedback.xǁSQLiteFileǁ_connect__mutmut_32": SQL_CASE,
    "avengers.stores.feedback.xǁSQLiteFileǁ_connect__mutmut_7": (
        "sqlite3.connect without timeout=: the PRAGMA busy_timeout run next sets the same wait"
    ),
    "avengers.routing.estimate.x_cluster_weights__mutmut_16": EINSUM,
    "avengers.routing.estimate.xǁPreparedǁbuild__mutmut_40": EINSUM,
    "avengers.routing.estimate.x_estimate__mutmut_94": ZIP_EQUAL,
    "avengers.routing.estimate.x_estimate__mutmut_97": ZIP_EQUAL,
    "avengers.routing.estimate.x_estimate__mutmut_98": ZIP_EQUAL,
    "avengers.routing.estimate.xǁPreparedǁfresh__mutmut_7": ZIP_EQUAL,
    "avengers.routing.estimate.xǁPreparedǁfresh__mutmut_10": ZIP_EQUAL,
    "avengers.routing.estimate.xǁPreparedǁfresh__mutmut_11": ZIP_EQUAL,
    "avengers.routing.estimate.xǁPreparedǁfresh__mutmut_4": (
        "`a is not b` in the cache check: the centroids never change, so the check always fails and "
        "every call rebuilds the cached arrays: same results"
    ),
    "avengers.routing.estimate.xǁPreparedǁbuild__mutmut_5": (
        "the cache built with key None: it never matches, every call rebuilds it: same results"
    ),
    "avengers.routing.estimate.x_rank__mutmut_24": "np.lexsort without axis=-1: -1 is the default",
    "avengers.routing.estimate.x_rank__mutmut_28": "np.lexsort on axis +1 for -1: the keys are 2-D, the same axis",
    "avengers.routing.estimate.x_sharpen__mutmut_17": (
        "`excess >= 0` for `> 0`: at excess 0 the weights are raised to the power 1, the same "
        "weights (to the last bit of rounding)"
    ),
    "avengers.routing.estimate.x_sharpen__mutmut_22": WIDTH_0,
    "avengers.routing.estimate.x_sharpen__mutmut_25": WIDTH_0,
    "avengers.routing.estimate.x_sharpen__mutmut_29": CLIP_TOP,
    "avengers.routing.estimate.x_sharpen__mutmut_37": CLIP_TOP,
    "avengers.routing.estimate.x_sharpen__mutmut_38": ERRSTATE,
    "avengers.routing.estimate.x_sharpen__mutmut_39": ERRSTATE,
    "avengers.routing.estimate.x_sharpen__mutmut_40": ERRSTATE,
    "avengers.routing.estimate.x_sharpen__mutmut_41": ERRSTATE,
    "avengers.routing.estimate.x_fallbacks__mutmut_21": (
        "`or` for `and` on cluster costs and global costs: both come from fitting with costs, "
        "kept or missing together"
    ),
    "avengers.routing.estimate.xǁPreparedǁbuild__mutmut_51": UNUSED_CAST,
    "avengers.routing.estimate.xǁPreparedǁbuild__mutmut_64": UNUSED_CAST,
    "avengers.routing.estimate.xǁPreparedǁbuild__mutmut_66": UNUSED_CAST,
    "avengers.routing.estimate.xǁPreparedǁbuild__mutmut_70": UNUSED_CAST,
    "avengers.routing.estimate.xǁPreparedǁbuild__mutmut_71": UNUSED_CAST,
    "avengers.routing.statistics.xǁClusterStatisticsǁestimate__mutmut_9": EINSUM,
    "avengers.routing.statistics.xǁClusterStatisticsǁestimate__mutmut_18": EINSUM,
    "avengers.routing.statistics.xǁClusterStatisticsǁestimate__mutmut_30": EINSUM,
    "avengers.routing.statistics.xǁClusterStatisticsǁestimate__mutmut_57": EINSUM,
    "avengers.routing.statistics.xǁClusterStatisticsǁestimate__mutmut_66": EINSUM,
    "avengers.routing.statistics.xǁClusterStatisticsǁestimate__mutmut_32": PAIRED,
    "avengers.routing.statistics.xǁClusterStatisticsǁupdate__mutmut_2": PAIRED,
    "avengers.routing.statistics.xǁClusterStatisticsǁadd_model__mutmut_25": PAIRED,
    "avengers.routing.statistics.xǁClusterStatisticsǁcluster_costs__mutmut_1": PAIRED,
    "avengers.routing.statistics.xǁClusterStatisticsǁcluster_costs__mutmut_2": PAIRED,
    "avengers.routing.statistics.x_cluster_prior__mutmut_12": BOOL_MASK,
    "avengers.routing.statistics.x_cluster_prior__mutmut_14": BOOL_MASK,
    "avengers.routing.statistics.x__solve_offset__mutmut_15": "one more bisection step: the result moves by under 24 / 2**51",
    "avengers.routing.statistics.x__solve_offset__mutmut_30": (
        "`<=` for `<` in the bisection: differs only when the fitted total equals the target "
        "exactly, and then by under 24 / 2**50"
    ),
    "avengers.routing.knn.xǁNeighbourScoresǁupdate__mutmut_2": PAIRED_KNN,
    "avengers.routing.estimate.x_neighbour_source__mutmut_6": PAIRED_KNN,
    "avengers.routing.estimate.x_blend_classifiers__mutmut_5": (
        "`and` for `or` on 'classifiers fitted' and 'coefficients cast': both read the same "
        "classifier_coef, None or not together"
    ),
    "avengers.routing.scoring.x_carried_by__mutmut_28": ZIP_EQUAL,
    "avengers.routing.scoring.x_carried_by__mutmut_32": ZIP_EQUAL,
    "avengers.routing.scoring.x_shrunk_means__mutmut_9": NO_DIVIDE,
    "avengers.routing.scoring.x_softmax_weights__mutmut_12": "np.argsort without axis=1: the default, -1, is axis 1 of a 2-D array",
    "avengers.routing.scoring.x_task_group_sums__mutmut_5": (
        "the task labels as a string array instead of an object array: == compares them the same"
    ),
    "avengers.routing.scoring.x_task_rows__mutmut_8": "np.array of Python ints without dtype=int64: NumPy 2 makes them int64 already",
    "avengers.answering.tally.x_count__mutmut_97": (
        "ballots without their order (all 0): as for vote_equivalence, ties keep the answers' "
        "first-appearance order, which is the index order, and earlier ballots still win"
    ),
    "avengers.answering.tally.x__decide_keys__mutmut_57": (
        "the winner's fallback 1 for 0 when the vote has none: a vote with an answer always "
        "names its winner, and without one the branch above returned"
    ),
    "avengers.online.xǁOnlineMixinǁ_batch_clusters__mutmut_18": (
        "`reshape(-2)` for `reshape(-1)`: NumPy reads any negative size as 'the rest'"
    ),
    "avengers.online.x__as_batch__mutmut_50": (
        "`max(initial=1.0) > 1` for `max(initial=0.0) > 1`: an initial 1 is not above 1"
    ),
    "avengers.answering.tally.x_decide__mutmut_46": (
        "`dropped = None` for 0: it is read only when an extractor ran, which sets it"
    ),
    "avengers.routing.knn.xǁNeighbourScoresǁadd_model__mutmut_4": (
        "the new column filled with None instead of NaN: None stored into a float array is NaN"
    ),
    "avengers.online.x_added_mask__mutmut_18": (
        "np.array of Python bools without dtype=bool: NumPy makes it bool (and an empty mask "
        "of no models selects nothing either way)"
    ),
    "avengers.routing.scoring.x_knn_estimate__mutmut_13": (
        "np.argpartition without axis=1: the default, -1, is axis 1 of a 2-D array"
    ),
    "avengers.routing.scoring.x_shrunk_means__mutmut_11": NO_DIVIDE,
    "avengers.routing.scoring.x_softmax_weights__mutmut_18": "astype(None) for astype(float64): None means float64",
    "avengers.routing.scoring.x_task_group_sums__mutmut_7": (
        "the task labels as a string array instead of an object array: == compares them the same"
    ),
    "avengers.routing.scoring.x_task_rows__mutmut_6": (
        "np.array of Python ints with dtype=None: NumPy 2 makes them int64 already"
    ),
    "avengers.routing.statistics.x_global_means__mutmut_5": NO_DIVIDE,
    "avengers.online.x__as_batch__mutmut_105": (
        "the cost table filled with None instead of NaN: None stored into a float array is NaN"
    ),
    "avengers.online.x__as_batch__mutmut_46": MIN_START,
    "avengers.online.x__as_batch__mutmut_73": MIN_START,
    "avengers.online.x_as_batch__mutmut_16": MIN_START,
    "avengers.online.x__as_batch__mutmut_65": (
        "`reshape(-2)` for `reshape(-1)`: NumPy reads any negative size as 'the rest'"
    ),
    "avengers.online.x_as_batch__mutmut_10": (
        "`reshape(-2)` for `reshape(-1)`: NumPy reads any negative size as 'the rest'"
    ),
    "avengers.online.x_added_mask__mutmut_16": (
        "np.array of Python bools with dtype=None: NumPy makes it bool (a router has models)"
    ),
    "avengers.online.x_impute_outcomes__mutmut_27": FITTED_ATTR,
    "avengers.online.x_impute_outcomes__mutmut_60": FITTED_ATTR,
    "avengers.online.xǁOnlineMixinǁupdate__mutmut_54": FITTED_ATTR,
    "avengers.online.x_impute_outcomes__mutmut_72": FLOAT64_MEANS,
    "avengers.online.x_impute_outcomes__mutmut_74": FLOAT64_MEANS,
    "avengers.online.x_task_means__mutmut_7": FLOAT64_MEANS,
    "avengers.online.x_task_means__mutmut_9": FLOAT64_MEANS,
    "avengers.online.x_impute_outcomes__mutmut_75": (
        "the mean-cost table tiled twice across: the columns read (the router's models) are "
        "all in the first copy"
    ),
    "avengers.training.calibration.x__calibration_data__mutmut_29": GIVEN_VECTORS,
    "avengers.training.calibration.x__calibration_data__mutmut_31": GIVEN_VECTORS,
    "avengers.training.calibration.x__choose__mutmut_22": (
        "warnings.warn with category None: None means UserWarning, the default"
    ),
    "avengers.training.calibration.x__choose__mutmut_25": (
        "warnings.warn without UserWarning: UserWarning is the default category"
    ),
    "avengers.training.calibration.x__chosen_costs__mutmut_6": (
        "np.full(n, None) for np.full(n, nan): taken only for data without costs, where the "
        "fold routers have no cost estimate either, and None stored into the float cost table "
        "is NaN"
    ),
    "avengers.training.calibration.x__cross_validate__mutmut_6": (
        "np.nan_to_num without nan=0.0: 0.0 is the default"
    ),
    "avengers.training.calibration.x__cross_validate__mutmut_23": PICKED_FLOATS,
    "avengers.training.calibration.x__cross_validate__mutmut_25": PICKED_FLOATS,
    "avengers.training.calibration.x__cross_validate__mutmut_27": (
        "the fold numbers as floats: compared with == to whole numbers only"
    ),
    "avengers.training.calibration.x__cross_validate__mutmut_29": (
        "the fold numbers as floats: compared with == to whole numbers only"
    ),
    "avengers.training.calibration.x__cross_validate__mutmut_50": (
        "each fold's router without the embedder: calibrate hands it embeddings only, it never "
        "embeds"
    ),
    "avengers.training.calibration.x__grid_points__mutmut_8": (
        "astype(None) for astype(float): None means float64"
    ),
    "avengers.training.calibration.x__grid_points__mutmut_29": (
        "the mean of no known cost taken instead of NaN: it is NaN too (with a NumPy warning, "
        "as the fold means' nanmean beside it gives)"
    ),
    "avengers.training.calibration.x__grid_points__mutmut_33": (
        "float('NAN') for float('nan'): the same value"
    ),
    "avengers.training.calibration.xǁCalibrationResultǁtable__mutmut_32": (
        "`or` for `and` on 'share target' and 'point has a share': a point has a share exactly "
        "when the target is a share"
    ),
    "avengers.training.calibration.xǁ_Targetǁmeasure__mutmut_5": UNKNOWN_COST,
    "avengers.training.calibration.xǁ_Targetǁmeasure__mutmut_7": UNKNOWN_COST,
    "avengers.training.calibration.xǁ_Targetǁmeasure__mutmut_8": UNKNOWN_COST,
    "avengers.training.calibration.xǁ_Targetǁmeasure__mutmut_9": UNKNOWN_COST,
    "avengers.training.calibration.xǁ_Targetǁmeasure__mutmut_10": UNKNOWN_COST,
    "avengers.online.xǁOnlineMixinǁ_exploration_picks__mutmut_8": (
        "`share < 0` for `share <= 0` before the early return: at share 0, "
        "ExplorationPolicy.picks returns the same -1 for every query"
    ),
    "avengers.online.xǁOnlineMixinǁ_exploration_picks__mutmut_12": NO_PICKS,
    "avengers.online.xǁOnlineMixinǁ_exploration_picks__mutmut_15": NO_PICKS,
    "avengers.online.xǁOnlineMixinǁ_exploration_picks__mutmut_17": NO_PICKS,
    "avengers.answering.tally.x_count__mutmut_21": (
        "`VoteResult(None, 0, {}, 0)` without its last argument: n_abstained defaults to 0"
    ),
    "avengers.answering.tally.x__decide_keys__mutmut_55": (
        "the winner's fallback dropped: a vote with an answer always names its winner, and "
        "without one the branch above returned"
    ),
    "avengers.answering.tally.x_decide__mutmut_47": (
        "`dropped = 1` for 0: it is read only when an extractor ran, which sets it (without "
        "one the cut note does not use it)"
    ),
    "avengers.routing.scoring.x_minmax__mutmut_18": NO_DIVIDE,
    "avengers.routing.scoring.x_minmax__mutmut_20": NO_DIVIDE,
    "avengers.routing.scoring.x_carried_by__mutmut_31": ZIP_EQUAL,
    "avengers.routing.scoring.x_evidence_share__mutmut_2": (
        "`weight < 0` for `<= 0`: at weight 0 the formulas below give zeros too (the pseudo "
        "count is > 0, so no 0/0)"
    ),
    "avengers.routing.scoring.x_group_sums__mutmut_30": "astype(None) for astype(float64): None means float64",
    "avengers.routing.scoring.x_knn_estimate__mutmut_33": "astype(None) for astype(float64): None means float64",
    "avengers.routing.scoring.x_task_rows__mutmut_10": (
        "a None hint looked up too: pos.get(None, -1) is -1, task names are strings"
    ),
    "avengers.routing.scoring.x_tradeoff__mutmut_5": ALPHA_1,
    "avengers.routing.scoring.x_tradeoff__mutmut_6": ALPHA_1,
    "avengers.routing.estimate.xǁPreparedǁbuild__mutmut_55": COEF_CAST,
    "avengers.routing.estimate.xǁPreparedǁbuild__mutmut_57": COEF_CAST,
    "avengers.routing.statistics.x_accumulate__mutmut_1": NO_DECAY,
    "avengers.routing.statistics.x_accumulate__mutmut_26": NO_DECAY,
    "avengers.routing.statistics.x_accumulate__mutmut_27": NO_DECAY,
    "avengers.routing.statistics.x_accumulate__mutmut_14": AS_GIVEN,
    "avengers.routing.statistics.x_accumulate__mutmut_16": AS_GIVEN,
    "avengers.routing.statistics.x_accumulate__mutmut_23": AS_GIVEN,
    "avengers.routing.statistics.x_accumulate__mutmut_25": AS_GIVEN,
    "avengers.routing.statistics.x_cluster_prior__mutmut_3": FLOAT64_MEANS,
    "avengers.routing.statistics.x_cluster_prior__mutmut_5": FLOAT64_MEANS,
    "avengers.routing.statistics.x_global_means__mutmut_7": NO_DIVIDE,
    "avengers.routing.statistics.x_observed_cells__mutmut_5": "astype(None) for astype(float64): None means float64",
    "avengers.routing.statistics.xǁClusterStatisticsǁfit__mutmut_36": "astype(None) for astype(float64): None means float64",
    "avengers.training.calibration.x__choose__mutmut_3": (
        "`<` for `<=` against target + 1e-12: differs only when a measure equals that sum exactly"
    ),
}
"""Surviving mutants that behave exactly like the original, with the reason."""

STATUSES = ("killed", "survived", "timeout", "no tests", "suspicious", "segfault", "skipped")


@dataclass
class Outcome:
    name: str
    counts: dict[str, int] = field(default_factory=dict)
    survivors: list[str] = field(default_factory=list)
    equivalent: list[str] = field(default_factory=list)
    sampled: str = ""
    seconds: float = 0.0
    failure: list[str] = field(default_factory=list)
    """Why mutmut could not test the mutants (its clean run of the tests failed), if it could not."""

    @property
    def score(self) -> float:
        killed = self.counts.get("killed", 0) + self.counts.get("timeout", 0)
        total = sum(self.counts.values())
        return killed / total if total else float("nan")


def _scratch(target: Target, folder: Path) -> None:
    """Lay out a project mutmut can mutate: src/avengers, tests, pyproject.toml."""
    shutil.copytree(
        ROOT / "shared" / "avengers",
        folder / "src" / "avengers",
        ignore=shutil.ignore_patterns("__pycache__"),
        symlinks=True,
    )
    shutil.copytree(ROOT / "tests", folder / "tests", ignore=shutil.ignore_patterns("__pycache__"))
    selection = ", ".join(f'"{t}"' for t in target.tests)
    extra = ", ".join(f'"{a}"' for a in ("-p", "no:cacheprovider", "-x", *target.pytest_args))
    (folder / "pyproject.toml").write_text(
        "[tool.mutmut]\n"
        'source_paths = ["src"]\n'
        f'only_mutate = ["src/avengers/{target.path}"]\n'
        f"pytest_add_cli_args_test_selection = [{selection}]\n"
        f"pytest_add_cli_args = [{extra}]\n"
        'process_isolation = "forkserver"\n'
        "use_git_change_detection = false\n"
        "\n[tool.pytest.ini_options]\n"
        'asyncio_mode = "auto"\n'
        'asyncio_default_fixture_loop_scope = "function"\n'
        'markers = ["slow: long-running tests"]\n'
    )


def _module_name(target: Target) -> str:
    return "avengers." + target.path[: -len(".py")].replace("/", ".")


def _wanted(name: str, target: Target) -> bool:
    mangled = name.split(".")[-1].partition("__mutmut_")[0]
    if any(fnmatch.fnmatchcase(mangled, f) for f in target.skip):
        return False
    return not target.functions or any(fnmatch.fnmatchcase(mangled, f) for f in target.functions)


def _mutmut(args: list[str], cwd: Path, env: dict[str, str], log: Path) -> str:
    cmd = [sys.executable, "-m", "mutmut", *args]
    with log.open("a") as f:
        f.write(f"\n$ {' '.join(cmd)}\n")
        f.flush()
        out = subprocess.run(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=f, text=True)
        f.write(out.stdout)
    return out.stdout


def _results(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        m = re.fullmatch(r"\s*(\S+__mutmut_\d+): (.+)", line)
        if m:
            out[m[1]] = m[2].strip()
    return out


def _stats_failure(log: str) -> list[str]:
    """The lines that say why mutmut's clean run of the selected tests failed (a failing or
    erroring test, no test reaching the module), or nothing if it did not fail. mutmut then
    leaves every mutant "not checked"; the usual cause is a test that fails in the scratch copy
    (the work tree's test files are copied as they are, unfinished edits included)."""
    lines = log.replace("\r", "\n").splitlines()
    if not any("failed to collect stats" in line for line in lines):
        return []
    keep = ("failed to collect stats", "FAILED ", "ERROR ", "Error", "short test summary")
    return [line.strip() for line in lines if any(k in line for k in keep)][:20]


def run_module(
    key: str, target: Target, *, sample: int | None, seed: int, keep: Path | None
) -> Outcome:
    t0 = time.monotonic()
    folder = Path(tempfile.mkdtemp(prefix=f"mutation-{key}-")) if keep is None else keep / key
    if keep is not None and folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    _scratch(target, folder)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", MUTMUT_NO_COLOR="1")
    log = folder / "mutmut.log"
    # first pass with an impossible name: generates the mutants and the test mapping only
    _mutmut(["run", "--max-children", "1", "no-such-mutant"], folder, env, log)
    listed = _results(_mutmut(["results", "--all", "true"], folder, env, log))
    prefix = _module_name(target) + "."
    names = sorted(n for n in listed if n.startswith(prefix) and _wanted(n, target))
    outcome = Outcome(key)
    if sample is not None and len(names) > sample:
        outcome.sampled = f"{sample} of {len(names)} (seed {seed})"
        names = sorted(random.Random(seed).sample(names, sample))
    if names:
        _mutmut(["run", "--max-children", "2", *names], folder, env, log)
    status = _results(_mutmut(["results", "--all", "true"], folder, env, log))
    for name in names:
        s = status.get(name, "not checked")
        if s == "survived" and name in EQUIVALENT:
            outcome.equivalent.append(name)
            continue
        outcome.counts[s] = outcome.counts.get(s, 0) + 1
        if s != "killed":
            outcome.survivors.append(f"{name}: {s}")
    outcome.seconds = time.monotonic() - t0
    outcome.failure = _stats_failure(log.read_text(errors="replace"))
    if keep is None:
        shutil.rmtree(folder, ignore_errors=True)
    return outcome


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("modules", nargs="*", help=f"of: {', '.join(MODULES)} (default: all)")
    ap.add_argument("--sample", type=int, help="mutants per module at most, drawn at random")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--keep", type=Path, help="keep the scratch projects here (mutmut show ...)")
    ap.add_argument("--survivors", action="store_true", help="list the surviving mutants")
    args = ap.parse_args(argv)
    unknown = [m for m in args.modules if m not in MODULES]
    if unknown:
        ap.error(f"unknown modules {unknown}; known: {', '.join(MODULES)}")
    rows = []
    print(f"{'module':14} {'mutants':>7} {'killed':>6} {'survived':>8} {'equiv.':>6} "
          f"{'other':>5} {'score':>6} {'time':>6}  sample")  # fmt: skip
    for key in args.modules or list(MODULES):
        o = run_module(key, MODULES[key], sample=args.sample, seed=args.seed, keep=args.keep)
        rows.append(o)
        killed = o.counts.get("killed", 0) + o.counts.get("timeout", 0)
        survived = o.counts.get("survived", 0)
        other = sum(o.counts.values()) - killed - survived
        total = sum(o.counts.values()) + len(o.equivalent)
        print(f"{key:14} {total:7d} {killed:6d} {survived:8d} {len(o.equivalent):6d} {other:5d} "
              f"{o.score:6.1%} {o.seconds:5.0f}s  {o.sampled}", flush=True)  # fmt: skip
        for line in o.failure:
            print(f"    mutmut's clean run failed: {line}")
        if args.survivors:
            for s in o.survivors:
                print(f"    {s}")
    return 0 if all(o.score >= 0.9 for o in rows) else 1


if __name__ == "__main__":
    sys.exit(main())

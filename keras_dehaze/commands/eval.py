"""``keras-dehaze eval``: see keras_dehaze.evaluation_cli."""


def run(args):
    from keras_dehaze.evaluation_cli import run_evaluation

    return run_evaluation(args)

"""An app process for the tests: starts a training run through the Train page, then waits.

    python app_process.py STEPS

Runs the app under AppTest in this process (with `STUDIO_APP_DATA` from
the environment), uploads three images, starts a textual-inversion run of
STEPS steps, prints `RUN <run folder>` and sleeps until it is killed, as
the app's server would keep running.
"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from conftest import messages, new_app, png_bytes  # noqa: E402

SAMPLE_STEPS = 2
# The widget keys of the textual-inversion settings (`train_page.field_key`).
PREFIX = "train_textual-inversion_"


def main():
    steps = int(sys.argv[1])
    app = new_app()
    app.run()
    app.file_uploader(key="image_uploads").set_value(
        [(f"concept-{seed}.png", png_bytes(seed), "image/png") for seed in range(3)]
    )
    app.run()
    app.text_input(key=f"{PREFIX}token").set_value("<app-toy>")
    app.number_input(key=f"{PREFIX}steps").set_value(steps)
    app.number_input(key=f"{PREFIX}sample_every").set_value(max(1, steps // 2))
    app.number_input(key=f"{PREFIX}save_every").set_value(max(1, steps // 2))
    app.number_input(key=f"{PREFIX}sample_steps").set_value(SAMPLE_STEPS)
    next(button for button in app.button if button.label == "Start training").click()
    app.run()
    problems = [message for message in messages(app) if message[0] != "warning"]
    if problems:
        print(f"PROBLEMS {problems}", flush=True)
        return 1
    runs = os.path.join(os.environ["STUDIO_APP_DATA"], "runs")
    print(f"RUN {os.path.join(runs, os.listdir(runs)[0])}", flush=True)
    while True:
        time.sleep(60)


if __name__ == "__main__":
    sys.exit(main())

"""The command line's last line of defence: an unexpected error still exits with a real code."""

from foodpipe import cli


def test_an_unexpected_error_prints_a_redacted_traceback_and_returns_1(monkeypatch, capsys):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "canary-secret-4711")

    def broken(args):
        raise RuntimeError("boom near canary-secret-4711 and http://user:hunter22@mlflow:5000")

    monkeypatch.setattr(cli, "cmd_predict", broken)
    assert cli.run_command(["predict", "--model", "m.keras", "x.jpg"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("Traceback") and "RuntimeError: boom near ***" in err
    assert "canary-secret-4711" not in err and "hunter22" not in err

"""sau_core.fairseq patches fairseq's private code (activation lookup, ChoiceEnum fields, Hydra nodes): it asserts
the fairseq version that code was written for."""
import pytest

fairseq = pytest.importorskip('fairseq')
import sau_core.fairseq as plugin  # noqa: E402


def test_the_installed_fairseq_is_the_version_the_patches_were_written_for():
    assert plugin.FAIRSEQ_VERSION == '0.12.2'
    plugin.check_fairseq_version(fairseq.__version__)  # e.g. 0.12.2+sauzoo.313cfab5.np2.4.6
    plugin.register()


@pytest.mark.parametrize('version', ['0.13.0', '0.12.3', '1.0.0+sauzoo.abc'])
def test_another_fairseq_version_is_refused_with_what_to_check(version, monkeypatch):
    monkeypatch.setattr(fairseq, '__version__', version)
    with pytest.raises(RuntimeError, match=rf'patches the private code of fairseq 0\.12\.2, but fairseq '
                                           rf'{version.replace(".", r"[.]").replace("+", r"[+]")} is installed'
                                           r'.*get_activation_fn.*ChoiceEnum.*ConfigStore'):
        plugin.register()

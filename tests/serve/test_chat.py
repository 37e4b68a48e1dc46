"""Multi-turn prompts, the chat session (in process) and tools/chat.py (a subprocess fed by stdin)."""
import os
import subprocess
import sys

import pytest

from conftest import REPO


@pytest.fixture(scope="module")
def engine(trained):
    from lman_ms.serve.engine import load_engine
    return load_engine(trained[1])


def test_first_turn_is_the_training_and_predictor_prompt(engine):
    from lman_ms.data.conversation import encode_sample
    from lman_ms.serve.conversation import Conversation, conversation_text, prompt_ids
    tok, tpl = engine.tokenizer, engine.template
    q, a = "Find every face.", "There is 1 face: [3, 4, 20, 22]."
    assert prompt_ids(tok, tpl, Conversation([], q)) == tok.encode(tpl.prompt(q))
    two = prompt_ids(tok, tpl, Conversation([(q, a)], "And the expression?"))
    ids, _ = encode_sample(tok, q, a, max_length=1000, template=tpl)
    assert two[:len(ids)] == ids and ids[-1] == tok.eos_id      # turn 1 exactly as trained, closed by EOS
    assert two[len(ids):] == tok.encode(f"{tpl.user} And the expression? {tpl.assistant}")
    text = conversation_text(tpl, Conversation([(q, a)], "And the expression?"))
    assert text.endswith(f"{a}</s>{tpl.user} And the expression? {tpl.assistant}") and "<image>" in text
    with pytest.raises(ValueError, match="no text"):
        prompt_ids(tok, tpl, Conversation([], "  "))


def test_session_streams_the_predictor_answer_and_reports_a_full_context(engine, trained):
    from lman_ms.serve.chat import ChatSession, ContextFull, read_image
    root = trained[0]
    img = os.path.join(root, "images", "img_002.png")
    session = ChatSession(engine, read_image(img), max_new_tokens=7)
    pieces = []
    first = session.ask("What is the facial expression of this person?", pieces.append)
    assert "".join(pieces) == first
    assert first == engine.predictor.answer([img], ["What is the facial expression of this person?"],
                                            max_new_tokens=7)[0]
    second = session.ask("And where is the face?")
    assert session.turns == [("What is the facial expression of this person?", first),
                             ("And where is the face?", second)]
    long_question = " ".join(["Describe the colour and the place of the square in this picture."] * 6)
    with pytest.raises(ContextFull, match="fills the model's context"):
        for _ in range(20):
            session.ask(long_question)
    session.reset()
    assert session.ask("Describe this image.") and len(session.turns) == 1


def test_chat_tool_over_stdin(trained):
    root, ckpt = trained
    long_question = " ".join(["Describe the colour and the place of the square in this picture."] * 6)
    lines = "\n".join(["Find every face.", "/image /no/such/file.png", "/bogus", "/reset"]
                      + [long_question] * 12 + ["/quit"]) + "\n"
    res = subprocess.run([sys.executable, os.path.join(REPO, "tools", "chat.py"), "--ckpt", ckpt, "--image",
                          os.path.join(root, "images", "img_001.png"), "--max-new-tokens", "5"], input=lines,
                         capture_output=True, text=True, timeout=600, cwd=REPO)
    assert res.returncode == 0, res.stderr[-3000:]
    out = res.stdout
    assert out.count("ASSISTANT> ") >= 2
    assert "error: /no/such/file.png: cannot read the image" in out
    assert "unknown command '/bogus'" in out and "(conversation forgotten)" in out
    assert "fills the model's context" in out and "/reset to start over" in out


def test_chat_tool_refuses_an_unreadable_image(trained, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    res = subprocess.run([sys.executable, os.path.join(REPO, "tools", "chat.py"), "--ckpt", trained[1], "--image",
                          str(bad)], input="/quit\n", capture_output=True, text=True, timeout=300, cwd=REPO)
    assert res.returncode == 2 and "bad.png: cannot read the image" in res.stderr

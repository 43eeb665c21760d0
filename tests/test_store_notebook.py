import nbformat

from bertnb.store_notebook import WIDGET_STATE, WIDGET_VIEW, widgets_to_text


def notebook_with_widget(source, model_id, plain_text):
    """A notebook of one code cell whose output is a widget view (with its plain-text fallback)."""
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell(source)
    cell.outputs = [nbformat.v4.new_output("display_data", data={WIDGET_VIEW: {"model_id": model_id},
                                                                 "text/plain": plain_text})]
    nb.cells = [cell]
    return nb


def test_tqdm_widget_becomes_its_final_text_and_state_is_dropped():
    nb = notebook_with_widget("pretrain(...)", "box", "HBox(...)")
    state = {
        "box": {"state": {"children": ["IPY_MODEL_left", "IPY_MODEL_bar", "IPY_MODEL_right"]}},
        "left": {"state": {"value": "pretraining: 100%"}},
        "bar": {"state": {"value": 100, "max": 100}},
        "right": {"state": {"value": " 100/100 [00:40&lt;00:00, 2.5step/s]"}},
    }
    nb.metadata["widgets"] = {WIDGET_STATE: {"state": state}}
    assert widgets_to_text(nb) == 1
    assert nb.cells[0].outputs[0]["data"] == {"text/plain": "pretraining: 100%|██████████| 100/100 [00:40<00:00, 2.5step/s]"}
    assert "widgets" not in nb.metadata


def test_unknown_widget_keeps_its_plain_text():
    nb = notebook_with_widget("slider", "x", "IntSlider(value=3)")
    assert widgets_to_text(nb) == 1
    assert nb.cells[0].outputs[0]["data"] == {"text/plain": "IntSlider(value=3)"}

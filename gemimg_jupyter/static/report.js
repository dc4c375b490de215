// The offline report's comparison: runs compare.js's `render` (inlined just above this text, in the
// same module) over a stand-in for the widget's model. Everything comes from inside the file: the cells
// from the JSON block #gemimg-data, thumbnails from the static table's <img data-cell> elements, the
// larger pictures from the JSON's `full` map. No request of any kind is made.
{
  const data = JSON.parse(document.getElementById("gemimg-data").textContent);
  const listeners = new Map();
  const thumb = (i) => {
    const img = document.querySelector(`img[data-cell="${Number(i)}"]`);
    return img ? img.getAttribute("src") : null;
  };
  const emit = (msg) => { for (const f of listeners.get("msg:custom") || []) f(msg); };
  const answer = (msg) => {
    if (msg.type === "thumbs") emit({ type: "thumbs", items: Object.fromEntries(msg.indexes.map((i) => [i, thumb(i)])) });
    else if (msg.type === "full") emit({ type: "full", index: msg.index, url: (data.full || {})[msg.index] || thumb(msg.index) });
  };
  const model = {
    get: (key) => data[key],
    on: (event, f) => listeners.set(event, [...(listeners.get(event) || []), f]),
    off: (event, f) => listeners.set(event, (listeners.get(event) || []).filter((g) => g !== f)),
    send: (msg) => queueMicrotask(() => answer(msg)),
  };
  const el = document.getElementById("gemimg-compare");
  el.replaceChildren();
  render({ model, el });
  for (const d of document.querySelectorAll("details.cells")) d.open = false; // the view shows every cell now
}

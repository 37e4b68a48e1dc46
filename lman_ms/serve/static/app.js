// The web demo: one image, a task preset or a free instruction, the answer streamed from
// /v1/chat/completions (server-sent events), then the picture the server drew and the parsed structure.
"use strict";

const RESOLUTION = " The original resolution of this image has a width and a height of {w} and {h}.";
const PRESETS = [
  ["face_detection", "Face detection", "Find every face in the image." + RESOLUTION],
  ["pedestrian_detection", "Pedestrian detection", "Where are the pedestrians in this image?" + RESOLUTION],
  ["pose_estimation", "Pose estimation", "Locate the keypoints of every person in the image." + RESOLUTION],
  ["expression_recognition", "Facial expression", "What is the facial expression of this person?"],
  ["action_recognition", "Action", "What is the person in the image doing?"],
  ["pedestrian_attribute", "Pedestrian attributes", "What are the attributes of this pedestrian?"],
  ["", "Free instruction", ""],
];

const $ = (id) => document.getElementById(id);
let image = null;   // {url: data URL, width, height}

function setState(state, message) {
  document.body.dataset.state = state;
  $("status").textContent = message;
}

function fillInstruction() {
  const preset = PRESETS.find((p) => p[0] === $("preset").value);
  if (!preset || !preset[2]) return;
  const w = image ? image.width : "W", h = image ? image.height : "H";
  $("instruction").value = preset[2].replace("{w}", w).replace("{h}", h);
}

function readFile(file) {
  if (!file) return;
  if (!file.type.startsWith("image/")) {
    setState("error", `${file.name} is not an image`);
    return;
  }
  const reader = new FileReader();
  reader.onload = () => {
    const img = new Image();
    img.onload = () => {
      image = {url: reader.result, width: img.naturalWidth, height: img.naturalHeight};
      $("preview").src = reader.result;
      $("preview").hidden = false;
      $("drop-hint").hidden = true;
      $("submit").disabled = false;
      fillInstruction();
      setState("ready", `${file.name}: ${image.width} x ${image.height}`);
    };
    img.onerror = () => setState("error", `${file.name} could not be decoded`);
    img.src = reader.result;
  };
  reader.readAsDataURL(file);
}

function show(result) {
  const extra = result.lman || {};
  if (extra.picture) {
    $("picture").src = extra.picture;
    $("picture").hidden = false;
  }
  if (extra.structure) $("structure").textContent = JSON.stringify(extra.structure, null, 1);
}

async function ask() {
  const text = $("instruction").value.trim();
  if (!image) return setState("error", "Choose an image first.");
  if (!text) return setState("error", "Write an instruction.");
  const body = {
    messages: [{role: "user", content: [{type: "image_url", image_url: {url: image.url}}, {type: "text", text}]}],
    max_tokens: Number($("max-tokens").value) || undefined, stream: true, visualize: true,
  };
  if ($("preset").value) body.task = $("preset").value;
  $("answer").textContent = "";
  $("structure").textContent = "";
  $("picture").hidden = true;
  $("submit").disabled = true;
  setState("running", "Answering...");
  try {
    const resp = await fetch("/v1/chat/completions", {
      method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(body)});
    if (!resp.ok) {
      const err = await resp.json().catch(() => ({error: {message: resp.statusText}}));
      throw new Error(`${resp.status}: ${err.error.message}`);
    }
    const reader = resp.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "", finish = null;
    for (;;) {
      const {value, done} = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, {stream: true});
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const line = buffer.slice(0, cut).trim();
        buffer = buffer.slice(cut + 2);
        if (!line.startsWith("data: ") || line === "data: [DONE]") continue;
        const event = JSON.parse(line.slice(6));
        if (event.error) throw new Error(event.error.message);
        const choice = event.choices[0];
        if (choice.delta.content) $("answer").textContent += choice.delta.content;
        if (choice.finish_reason) {
          finish = choice.finish_reason;
          show(event);
        }
      }
    }
    setState("done", `Done (${finish || "no finish reason"}).`);
  } catch (e) {
    setState("error", String(e.message || e));
  } finally {
    $("submit").disabled = !image;
  }
}

function init() {
  for (const [value, label] of PRESETS) {
    const opt = document.createElement("option");
    opt.value = value;
    opt.textContent = label;
    $("preset").appendChild(opt);
  }
  $("preset").addEventListener("change", fillInstruction);
  $("file").addEventListener("change", () => readFile($("file").files[0]));
  const drop = $("drop");
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    readFile(e.dataTransfer.files[0]);
  });
  $("submit").addEventListener("click", ask);
  fetch("/v1/models").then((r) => r.json()).then((m) => { $("model").textContent = m.data[0].id; })
    .catch(() => {});
  fillInstruction();
}

init();

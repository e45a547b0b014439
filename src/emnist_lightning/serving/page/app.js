// The drawing page: pointer strokes on a canvas, a prediction once the pen pauses, the top k
// as bars and the 28x28 input the model saw. What the model reads and how many guesses it
// ranks come from the server's /info. When the top candidates are characters the model's
// writers draw alike, it asks ("O or 0?"). Where the server collects corrections, the user
// can save the right character. Where the server needs an API key, the page asks for it once
// per tab. Talks only to this server (/info, /predict, /correction).
"use strict";

// Relative, so the page also works behind a path prefix.
const PREDICT_URL = "predict";
const CORRECTION_URL = "correction";
const INFO_URL = "info";
// After a stroke ends, wait this long before asking; a next stroke starting sooner cancels
// it. Long enough for the pen lift between the strokes of one character (so no guess flickers
// up after the first bar of a T), short enough to feel immediate.
const PAUSE_MS = 400;
// The server's API key, if it needs one: kept for this tab only (sessionStorage), sent as
// LitServe's X-API-Key header.
const KEY_STORE = "emnist-api-key";
const KEY_HEADER = "X-API-Key";

const pad = document.getElementById("pad");
const ctx = pad.getContext("2d");
const undoButton = document.getElementById("undo");
const clearButton = document.getElementById("clear");
const fileInput = document.getElementById("file");
const statusLine = document.getElementById("status");
const predictionEl = document.getElementById("prediction");
const probabilityEl = document.getElementById("probability");
const topList = document.getElementById("top");
const inputImage = document.getElementById("input");
const askBox = document.getElementById("ask");
const askQuestion = document.getElementById("ask-question");
const askChoices = document.getElementById("ask-choices");
const classesEl = document.getElementById("classes");
const topTitle = document.getElementById("top-title");
const correctForm = document.getElementById("correct");
const truthInput = document.getElementById("truth");
const keyForm = document.getElementById("key");
const keyInput = document.getElementById("api-key");

let strokes = []; // each stroke: its points [x, y] in canvas pixels, as drawn
let drawing = false;
let timer = null;
let sequence = 0; // answers to superseded requests are dropped
let correctionsOn = false; // the server stores corrections (its /info says)
let shown = null; // what the shown answer was read from: { image, filename, strokes }

function storedKey() {
  try {
    return sessionStorage.getItem(KEY_STORE) || "";
  } catch {
    return ""; // storage blocked: the key lives until the page reloads
  }
}

let apiKey = storedKey();

// fetch() with the API key, if one was given; a 401 asks the user for the key.
async function call(url, options = {}) {
  const headers = apiKey ? { [KEY_HEADER]: apiKey } : {};
  const response = await fetch(url, { ...options, headers });
  if (response.status === 401) askForKey(apiKey ? "That API key was refused." : "");
  return response;
}

function askForKey(problem) {
  keyForm.hidden = false;
  keyInput.focus();
  setStatus(`${problem} This server needs an API key: enter it below.`.trim(), true);
}

function useKey(event) {
  event.preventDefault();
  apiKey = keyInput.value.trim();
  try {
    sessionStorage.setItem(KEY_STORE, apiKey);
  } catch {
    // storage blocked: keep it in memory only
  }
  keyInput.value = "";
  keyForm.hidden = true;
  setStatus("Key saved for this tab. Draw with the mouse, a finger or a pen.");
  readInfo();
  if (strokes.length) predictDrawing();
}

function resetCanvas() {
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, pad.width, pad.height);
  ctx.strokeStyle = "#000";
  ctx.fillStyle = "#000";
  ctx.lineWidth = pad.width / 14;
  ctx.lineCap = "round";
  ctx.lineJoin = "round";
}

function dot([x, y]) {
  ctx.beginPath();
  ctx.arc(x, y, ctx.lineWidth / 2, 0, 2 * Math.PI);
  ctx.fill();
}

function segment(from, points) {
  ctx.beginPath();
  ctx.moveTo(...from);
  for (const p of points) ctx.lineTo(...p);
  ctx.stroke();
}

function redraw() {
  resetCanvas();
  for (const stroke of strokes) {
    dot(stroke[0]);
    if (stroke.length > 1) segment(stroke[0], stroke.slice(1));
  }
}

function point(event) {
  const box = pad.getBoundingClientRect();
  return [
    ((event.clientX - box.left) * pad.width) / box.width,
    ((event.clientY - box.top) * pad.height) / box.height,
  ];
}

function setStatus(text, isError = false) {
  statusLine.textContent = text;
  statusLine.classList.toggle("error", isError);
}

function percent(probability) {
  return `${(probability * 100).toFixed(1)}%`;
}

function showAnswer(character, probability) {
  predictionEl.textContent = character;
  probabilityEl.textContent = probability === null ? "" : percent(probability);
}

function bar({ character, probability }) {
  const item = document.createElement("li");
  const name = document.createElement("span");
  name.className = "name";
  name.textContent = character;
  const track = document.createElement("span");
  track.className = "track";
  track.setAttribute("aria-hidden", "true");
  const fill = document.createElement("span");
  fill.className = "fill";
  fill.style.display = "block";
  fill.style.width = percent(probability);
  track.append(fill);
  const value = document.createElement("span");
  value.className = "value";
  value.textContent = percent(probability);
  item.append(name, track, value);
  return item;
}

function question(characters) {
  const quoted = characters.map((c) => `\u201c${c}\u201d`);
  return `${quoted.slice(0, -1).join(", ")} or ${quoted[quoted.length - 1]}?`;
}

function showAsk(result, label) {
  const offered = result.look_alikes || [];
  askBox.hidden = offered.length < 2;
  askChoices.replaceChildren();
  if (askBox.hidden) return;
  askQuestion.textContent = question(offered);
  for (const character of offered) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "choice";
    button.textContent = character;
    button.setAttribute("aria-pressed", "false");
    button.addEventListener("click", () => {
      for (const other of askChoices.children) other.setAttribute("aria-pressed", "false");
      button.setAttribute("aria-pressed", "true");
      showAnswer(character, null);
      setStatus(`${label}: you chose ${character}`);
      // A pick other than the model's answer is a correction the user may save.
      truthInput.value = character === result.prediction ? "" : character;
    });
    askChoices.append(button);
  }
}

function showResult(result, label) {
  showAnswer(result.prediction, result.probability);
  topList.replaceChildren(...result.top.map(bar));
  inputImage.src = `data:image/png;base64,${result.input}`;
  inputImage.hidden = false;
  showAsk(result, label);
  truthInput.value = "";
  correctForm.hidden = !correctionsOn;
}

function clearResult() {
  predictionEl.textContent = "\u2013";
  probabilityEl.textContent = "";
  topList.replaceChildren();
  inputImage.hidden = true;
  inputImage.removeAttribute("src");
  askBox.hidden = true;
  askChoices.replaceChildren();
  correctForm.hidden = true;
  shown = null;
}

async function send(image, filename, label) {
  const mine = ++sequence;
  const sent = { image, filename, strokes: structuredClone(strokes) };
  const form = new FormData();
  form.append("image", image, filename);
  setStatus("Reading\u2026");
  try {
    const response = await call(PREDICT_URL, { method: "POST", body: form });
    const body = await response.json().catch(() => ({}));
    if (mine !== sequence) return;
    if (response.status === 401) return; // askForKey said what to do
    if (!response.ok) {
      setStatus(body.detail || `The server answered ${response.status}.`, true);
      return;
    }
    shown = sent;
    showResult(body, label);
    // Also here, beside the canvas: on a phone the result panel is below the fold.
    setStatus(`${label}: ${body.prediction} (${percent(body.probability)})`);
  } catch (error) {
    if (mine === sequence) setStatus(`Cannot reach the server (${error.message}).`, true);
  }
}

function predictDrawing() {
  timer = null;
  if (!strokes.length) return;
  pad.toBlob((blob) => send(blob, "drawing.png", "Your drawing"), "image/png");
}

function cancelPending() {
  clearTimeout(timer);
  timer = null;
  sequence++; // an answer on its way belongs to a drawing that is gone
}

function clearAll() {
  cancelPending();
  strokes = [];
  undoButton.disabled = true;
  resetCanvas();
  clearResult();
  fileInput.value = "";
  setStatus("Cleared. Draw with the mouse, a finger or a pen.");
}

function undoStroke() {
  if (drawing || !strokes.length) return;
  cancelPending();
  strokes.pop();
  undoButton.disabled = !strokes.length;
  redraw();
  clearResult();
  if (strokes.length) {
    setStatus("Removed the last stroke.");
    predictDrawing();
  } else {
    setStatus("Removed the last stroke. Draw with the mouse, a finger or a pen.");
  }
}

async function saveCorrection(event) {
  event.preventDefault();
  if (!shown) return;
  const form = new FormData();
  form.append("image", shown.image, shown.filename);
  form.append("character", truthInput.value);
  form.append("strokes", JSON.stringify(shown.strokes));
  try {
    const response = await call(CORRECTION_URL, { method: "POST", body: form });
    const body = await response.json().catch(() => ({}));
    if (response.status === 401) return; // askForKey said what to do
    if (!response.ok) {
      setStatus(body.detail || `The server answered ${response.status}.`, true);
      return;
    }
    correctForm.hidden = true;
    setStatus(`Saved as ${body.character}: thank you, the next training can learn from it.`);
  } catch (error) {
    setStatus(`Cannot reach the server (${error.message}).`, true);
  }
}
// Whole groups of characters a model may know, named; its other classes are listed.
const CLASS_GROUPS = [
  ["0123456789", "a digit"],
  ["ABCDEFGHIJKLMNOPQRSTUVWXYZ", "a capital letter"],
  ["abcdefghijklmnopqrstuvwxyz", "a small letter"],
];

// The model's classes as parts of a sentence, each part a list of strings and elements.
function classParts(classes) {
  const left = new Set(classes);
  const parts = [];
  for (const [members, name] of CLASS_GROUPS) {
    if ([...members].every((c) => left.has(c))) {
      parts.push([name]);
      for (const c of members) left.delete(c);
    }
  }
  // EMNIST's letters split files both cases under the small letters: "a letter".
  if (parts.length === 1 && parts[0][0] === "a small letter" && !left.size) parts[0][0] = "a letter";
  const rest = classes.filter((c) => left.has(c));
  if (rest.length) {
    const listed = document.createElement("span");
    listed.className = "mono";
    listed.textContent = rest.join(" ");
    parts.push([rest.length > 1 ? "one of " : "", listed]);
  }
  return parts;
}

// "A digit, a capital letter or one of a b d e f g h n q r t"
function classSentence(classes) {
  const items = [];
  classParts(classes).forEach((part, index, parts) => {
    if (index > 0) items.push(index === parts.length - 1 ? " or " : ", ");
    items.push(...part);
  });
  if (typeof items[0] === "string") items[0] = items[0].charAt(0).toUpperCase() + items[0].slice(1);
  return items;
}

async function readInfo() {
  try {
    const response = await call(INFO_URL);
    const model = response.ok ? (await response.json()).model : null;
    if (!model || !Array.isArray(model.classes)) return;
    topTitle.textContent = `Top ${model.top_k}`;
    classesEl.replaceChildren(...classSentence(model.classes));
    correctionsOn = model.corrections === true;
  } catch {
    // The page still reads drawings without it; the header stays generic, corrections off.
  }
}

pad.addEventListener("pointerdown", (event) => {
  if (event.button !== 0) return;
  event.preventDefault();
  pad.setPointerCapture(event.pointerId);
  clearTimeout(timer);
  timer = null;
  drawing = true;
  const start = point(event);
  strokes.push([start]);
  dot(start);
});

pad.addEventListener("pointermove", (event) => {
  if (!drawing) return;
  const stroke = strokes[strokes.length - 1];
  const from = stroke[stroke.length - 1];
  const coalesced = event.getCoalescedEvents ? event.getCoalescedEvents() : [];
  const points = (coalesced.length ? coalesced : [event]).map(point);
  stroke.push(...points);
  segment(from, points);
});

function endStroke() {
  if (!drawing) return;
  drawing = false;
  // The canvas as the strokes render it whole (as an undo redraws it), not piecewise.
  redraw();
  undoButton.disabled = false;
  clearTimeout(timer);
  timer = setTimeout(predictDrawing, PAUSE_MS);
}

pad.addEventListener("pointerup", endStroke);
pad.addEventListener("pointercancel", endStroke);
undoButton.addEventListener("click", undoStroke);
clearButton.addEventListener("click", clearAll);
document.addEventListener("keydown", (event) => {
  if (event.key === "Escape") clearAll();
  const typing = event.target instanceof HTMLInputElement;
  if ((event.ctrlKey || event.metaKey) && event.key === "z" && !typing) {
    event.preventDefault();
    undoStroke();
  }
});

fileInput.addEventListener("change", () => {
  const file = fileInput.files[0];
  if (!file) return;
  cancelPending();
  strokes = [];
  undoButton.disabled = true;
  resetCanvas();
  send(file, file.name, file.name);
});

correctForm.addEventListener("submit", saveCorrection);
keyForm.addEventListener("submit", useKey);
resetCanvas();
readInfo();

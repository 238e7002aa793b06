// The zoo's page: lists the served models, sends the chosen image to the predict endpoint and
// shows the result (bars for a classifier, the annotated picture for the other tasks). URLs are
// relative, so that the page also works behind a path prefix.
"use strict";

const $ = (id) => document.getElementById(id);
const models = new Map();
let listing = Promise.resolve(false);  // the model list's request, the last one made

function headers() {
  const token = $("token").value;
  return token ? { Authorization: `Bearer ${token}` } : {};
}

function status(text, error = false) {
  $("status").textContent = text;
  $("status").classList.toggle("error", error);
}

async function failure(response) {
  if (response.status === 401) $("token-row").hidden = false;
  try {
    const body = await response.json();
    return `${response.status}: ${body.error.message}`;
  } catch {
    return `${response.status} ${response.statusText}`;
  }
}

// Lists the served models in the menu; false (the reason shown) when the server refuses.
async function loadModels() {
  const response = await fetch("v1/models?all=true", { headers: headers() });
  if (!response.ok) {
    status(await failure(response), true);
    return false;
  }
  const select = $("model");
  select.replaceChildren();
  for (const model of (await response.json()).models.filter((m) => m.served)) {
    models.set(model.name, model);
    select.append(new Option(`${model.name} (${model.task})`, model.name));
  }
  describe();
  return true;
}

// Asks for the model list; the promise (of loadModels' answer) is kept for predict to wait on.
function listModels() {
  listing = loadModels().catch((error) => {
    status(`The server did not answer: ${error}`, true);
    return false;
  });
  return listing;
}

// The chosen model's summary; where it was built from your checkpoint, the file and its hash, and the export's
// parity figures against PyTorch (a loaded model's).
function describe() {
  const model = models.get($("model").value);
  const lines = model ? [model.summary] : [];
  const weights = model && model.weights;
  if (weights && weights.file && !weights.tag) {
    lines.push(`weights: ${weights.file} (sha256 ${(weights.sha256 || "?").slice(0, 16)})`);
  }
  for (const [output, p] of Object.entries((model && model.parity) || {})) {
    if (p.max_abs === null) continue;
    const top1 = p.top1_agreement === null ? "" : `, top-1 agreement ${(p.top1_agreement * 100).toFixed(0)}%`;
    lines.push(`parity with PyTorch, ${output}: max abs diff ${p.max_abs.toExponential(2)}${top1}`);
  }
  $("about").textContent = lines.join("\n");
}

function showBars(result) {
  const bars = $("bars");
  for (const p of result.topk.length ? result.topk : [result]) {
    const item = document.createElement("li");
    const label = Object.assign(document.createElement("span"), { className: "label", textContent: p.label });
    const bar = Object.assign(document.createElement("span"), { className: "bar" });
    bar.style.width = `${Math.max(1, p.score * 100)}%`;
    const score = document.createElement("span");
    score.textContent = `${(p.score * 100).toFixed(1)}%`;
    item.append(label, bar, score);
    bars.append(item);
  }
}

async function predict(event) {
  event.preventDefault();
  // A token typed just before the click lists the models as the click comes (its change event): wait for that
  // list, or ask for it, so that the first Predict after the token runs.
  if (!(await listing) && !(await listModels())) return;
  const file = $("image").files[0];
  const name = $("model").value;
  if (!file) {
    status("Choose an image first.", true);
    $("image").focus();
    return;
  }
  $("bars").replaceChildren();
  $("picture").hidden = true;
  $("run").disabled = true;
  status(`Running ${name}…`);
  const classifier = models.get(name)?.task === "image-classification";
  const url = `v1/models/${encodeURIComponent(name)}/predict${classifier ? "" : "?annotate=true"}`;
  const start = performance.now();
  try {
    const response = await fetch(url, {
      method: "POST", body: file, headers: { ...headers(), "Content-Type": file.type || "application/octet-stream" },
    });
    if (!response.ok) {
      status(await failure(response), true);
      return;
    }
    const ms = Math.round(performance.now() - start);
    if (classifier) {
      const body = await response.json();
      showBars(body.result);
      status(`${body.result.label} · ${ms} ms (${body.ms} ms in the server)`);
    } else {
      const picture = $("picture");
      if (picture.src) URL.revokeObjectURL(picture.src);
      picture.src = URL.createObjectURL(await response.blob());
      picture.alt = `${name}'s result drawn on ${file.name}`;
      picture.hidden = false;
      status(`${name} · ${ms} ms`);
    }
  } catch (error) {
    status(`The server did not answer: ${error}`, true);
  } finally {
    $("run").disabled = false;
  }
}

function dropZone() {
  const drop = $("drop");
  drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    if (event.dataTransfer.files.length) {
      $("image").files = event.dataTransfer.files;
      status(`${event.dataTransfer.files[0].name} chosen.`);
    }
  });
}

$("model").addEventListener("change", describe);
$("form").addEventListener("submit", predict);
$("token").addEventListener("change", listModels);
dropZone();
listModels();

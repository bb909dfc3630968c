// Polls the server's JSON every POLL ms and swaps in what changed; no framework, no build.
(function () {
  const POLL = 1500;
  const page = document.body.dataset.page;
  async function get(url) {
    const r = await fetch(url, { cache: "no-store" });
    if (!r.ok) throw new Error(url + ": " + r.status + " " + (await r.text()));
    return r.json();
  }
  function show(el, on) { el.hidden = !on; }
  async function list() {
    const d = await get("/api/renders");
    document.getElementById("rows").innerHTML = d.rows;
  }
  const name = document.body.dataset.name;
  let videoSrc = null, contactSrc = null;
  async function render() {
    const d = await get("/api/r/" + name);
    document.getElementById("live").innerHTML = d.live;
    const thumb = document.getElementById("thumb");
    if (d.thumb && thumb.getAttribute("src") !== d.thumb) thumb.src = d.thumb;
    show(thumb, !!d.thumb);
    show(document.getElementById("thumb-empty"), !d.thumb);
    document.getElementById("thumb-caption").textContent = d.thumbCaption;
    document.getElementById("preview-note").textContent = d.previewNote;
    const video = document.getElementById("video");
    const contact = document.getElementById("contact");
    if (d.video !== videoSrc) {
      videoSrc = d.video;
      if (videoSrc) { video.src = videoSrc; video.load(); } else { video.removeAttribute("src"); }
    }
    if (d.contact !== contactSrc) {
      contactSrc = d.contact;
      if (contactSrc) contact.src = contactSrc; else contact.removeAttribute("src");
    }
    show(video, !!videoSrc);
    show(contact, !!contactSrc);
  }
  const tick = page === "list" ? list : render;
  async function loop() {
    try { await tick(); document.body.dataset.error = ""; }
    catch (e) { document.body.dataset.error = String(e); }
    document.body.dataset.polls = String(Number(document.body.dataset.polls || 0) + 1);
    setTimeout(loop, POLL);
  }
  loop();
})();

// The upload box: drag and drop, and the size check before anything is sent. The form works without this
// script (the server then answers an oversized upload with the same message); it only adds dropping files
// and saves a unit from waiting for a big upload that would be refused.
(function () {
  var form = document.getElementById("upload-form");
  if (!form) return;
  var input = document.getElementById("file");
  var state = document.getElementById("upload-state");
  var limit = parseInt(form.getAttribute("data-max-bytes"), 10) || 0;
  var limitMb = form.getAttribute("data-max-mb");
  var hint = state.textContent;

  function megabytes(bytes) { return (bytes / 1024 / 1024).toFixed(1); }

  // The Chinese message when the files are too big together, or "" when they may be sent.
  function tooBig(files) {
    var total = 0;
    for (var i = 0; i < files.length; i++) total += files[i].size;
    if (!limit || total <= limit) return "";
    return "所选文件合计 " + megabytes(total) + " MB，超过每次上传的上限 " + limitMb +
      " MB，没有上传。请检查是否选错了文件（一份申报表通常不到 1 MB）；文件较多时请分几次上传。";
  }

  function show(message) {
    state.textContent = message || hint;
    state.className = message ? "alert" : "hint";
    state.setAttribute("role", message ? "alert" : "status");
  }

  function send(files) {
    var message = tooBig(files);
    show(message);
    if (message) return false;
    state.textContent = "正在上传并检查 " + files.length + " 个文件……";
    return true;
  }

  ["dragenter", "dragover"].forEach(function (name) {
    form.addEventListener(name, function (e) { e.preventDefault(); form.classList.add("over"); });
  });
  ["dragleave", "drop"].forEach(function (name) {
    form.addEventListener(name, function (e) { e.preventDefault(); form.classList.remove("over"); });
  });
  form.addEventListener("drop", function (e) {
    if (!e.dataTransfer || !e.dataTransfer.files.length) return;
    input.files = e.dataTransfer.files;
    if (send(input.files)) form.submit();
  });
  input.addEventListener("change", function () { show(tooBig(input.files)); });
  form.addEventListener("submit", function (e) {
    if (!send(input.files)) e.preventDefault();
  });
})();

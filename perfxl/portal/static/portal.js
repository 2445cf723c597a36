// Drag and drop onto the upload box. The form works without this script: it only adds dropping files.
(function () {
  var form = document.getElementById("upload-form");
  if (!form) return;
  var input = document.getElementById("file");
  var state = document.getElementById("upload-state");
  ["dragenter", "dragover"].forEach(function (name) {
    form.addEventListener(name, function (e) { e.preventDefault(); form.classList.add("over"); });
  });
  ["dragleave", "drop"].forEach(function (name) {
    form.addEventListener(name, function (e) { e.preventDefault(); form.classList.remove("over"); });
  });
  form.addEventListener("drop", function (e) {
    if (!e.dataTransfer || !e.dataTransfer.files.length) return;
    input.files = e.dataTransfer.files;
    state.textContent = "正在上传并检查 " + e.dataTransfer.files.length + " 个文件……";
    form.submit();
  });
  form.addEventListener("submit", function () { state.textContent = "正在上传并检查……"; });
})();

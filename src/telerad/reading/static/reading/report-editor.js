// The report editor: phrase insertion, keyboard shortcuts, showing refused
// saves and signatures, and a warning before leaving with an unsaved draft.
(function () {
  "use strict";
  // The editor fragment carries this script, so it may load more than once.
  if (window.teleradReportEditor) {
    return;
  }
  window.teleradReportEditor = true;

  // Statuses whose response body explains why a save or signature was
  // rejected. By default htmx does not swap error responses.
  var EXPLAINED_STATUSES = [400, 403, 409];

  document.addEventListener("htmx:beforeSwap", function (event) {
    var source = event.detail.elt;
    if (source && source.closest && source.closest(".report-editor") &&
        EXPLAINED_STATUSES.indexOf(event.detail.xhr.status) !== -1) {
      event.detail.shouldSwap = true;
      event.detail.isError = false;
    }
  });

  // A rejected signature brings the editor back with the message just above
  // the password field, which htmx focuses because it has autofocus. The
  // focus scrolls the field only to the window's edge, which can leave the
  // message outside the view, so the field is centred. The signature saved
  // none of the posted text, so the draft is saved now.
  document.addEventListener("htmx:load", function (event) {
    var editor = event.detail.elt;
    if (!editor.matches || !editor.matches(".report-editor")) {
      return;
    }
    var field = editor.querySelector("input[autofocus]");
    if (field) {
      field.scrollIntoView({ block: "center" });
    }
    var unsaved = editor.querySelector(".report-form[data-unsaved]");
    if (unsaved) {
      htmx.trigger(unsaved, "report-save");
    }
  });

  function insertPhrase(textarea, phrase) {
    var start = textarea.selectionStart;
    var end = textarea.selectionEnd;
    var before = textarea.value.slice(0, start);
    var after = textarea.value.slice(end);
    var separator = before && !/\s$/.test(before) ? " " : "";
    textarea.value = before + separator + phrase + after;
    var caret = (before + separator + phrase).length;
    textarea.setSelectionRange(caret, caret);
    textarea.focus();
    // The autosave listens for input events, which setting value does not fire.
    textarea.dispatchEvent(new Event("input", { bubbles: true }));
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest("button[data-phrase-target]");
    if (!button) {
      return;
    }
    var textarea = document.getElementById(button.dataset.phraseTarget);
    if (textarea) {
      insertPhrase(textarea, button.dataset.phraseText);
    }
  });

  document.addEventListener("keydown", function (event) {
    if (!(event.ctrlKey || event.metaKey)) {
      return;
    }
    var form = event.target.closest && event.target.closest(".report-form");
    if (!form) {
      return;
    }
    if (event.key === "s" || event.key === "S") {
      event.preventDefault();
      htmx.trigger(form, "report-save");
    } else if (event.key === "Enter") {
      var password = form.querySelector("input[name=password]");
      if (password && event.target !== password) {
        event.preventDefault();
        password.focus();
      }
    }
  });

  // A draft is unsaved from the first keystroke until a save succeeds.
  document.addEventListener("input", function (event) {
    var form = event.target.closest && event.target.closest(".report-form");
    if (form && event.target.tagName === "TEXTAREA") {
      form.dataset.unsaved = "true";
    }
  });

  document.addEventListener("htmx:afterRequest", function (event) {
    var form = event.detail.elt.closest && event.detail.elt.closest(".report-form");
    if (form && event.detail.successful) {
      delete form.dataset.unsaved;
    }
  });

  window.addEventListener("beforeunload", function (event) {
    if (document.querySelector(".report-form[data-unsaved]")) {
      event.preventDefault();
    }
  });
})();

from django.urls import path

from telerad.reading import reports_template_views as template_views
from telerad.reading import reports_views as views

app_name = "reports"
urlpatterns = [
    path("templates/", template_views.template_list_view, name="template-list"),
    path("templates/new/", template_views.template_create_view, name="template-create"),
    path("templates/import/", template_views.template_import_view, name="template-import"),
    path("templates/export.json", template_views.template_export_all_view, name="template-export-all"),
    path("templates/phrases/", template_views.global_phrases_view, name="template-phrases"),
    path("templates/<int:template_id>/", template_views.template_edit_view, name="template-edit"),
    path("templates/<int:template_id>/active/", template_views.template_active_view, name="template-active"),
    path("templates/<int:template_id>/export.json", template_views.template_export_view, name="template-export"),
    path("exams/<int:exam_id>/", views.editor_view, name="editor"),
    path("exams/<int:exam_id>/template/", views.choose_template_view, name="choose-template"),
    path("exams/<int:exam_id>/sign/", views.sign_view, name="sign"),
    path("exams/<int:exam_id>/addendum/", views.addendum_view, name="addendum"),
    path("exams/<int:exam_id>/versions/", views.versions_view, name="versions"),
]

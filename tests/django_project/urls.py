from __future__ import annotations

from django.urls import path

from . import views

urlpatterns = [
    path("shop/<str:account>/item/<int:item>", views.item),
    path("fail", views.fail),
    path("stream", views.stream),
    path("astream", views.astream),
]

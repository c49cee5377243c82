"""Named training recipes (``<name>.yaml``), installed as the ``medseg.pipelines`` package."""

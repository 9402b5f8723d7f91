"""userexport: export the users of a Microsoft Entra ID tenant to CSV in Blob Storage."""
